"""A plugin as a third party would write one: an executor that runs GELU with its own kernel.

It is installed from its own pyproject.toml and found through the ``thunder.plugins`` entry
point ``sample``; the tests check that its executor claims ``ltorch.gelu`` (visible in the final
trace as ``sample.ltorch_gelu``) and that its kernel really runs.
"""

import math

import torch
from thunder.executors import OperatorExecutor
from thunder.plugins import hookimpl

calls = {"gelu": 0}


def gelu(a, approximate="none"):
    """GELU as 0.5 * x * (1 + erf(x / sqrt(2))), counted so tests can see it ran."""
    calls["gelu"] += 1
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (a + 0.044715 * a * a * a)
        return 0.5 * a * (1 + torch.tanh(inner))
    return 0.5 * a * (1 + torch.erf(a * (1 / math.sqrt(2))))


class SamplePlugin:
    """Options: ``float_only`` restricts the executor to floating-point inputs."""

    def __init__(self, float_only: bool = True):
        self.executor = OperatorExecutor("sample", priority=10)
        checker = (lambda a, *args, **kwargs: a.dtype.is_floating_point) if float_only else None
        self.executor.register("ltorch.gelu", gelu, checker=checker)

    @hookimpl
    def thunder_executors(self, options):
        return [self.executor]
