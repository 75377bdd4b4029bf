"""Runtime checks: conditions on tensor values that eager code checks as it runs (and raises
on), checked when the compiled program runs, since values are unknown while it is traced."""

from __future__ import annotations

import torch

from thunder.torch.registry import torchsymbol


def assert_all_true(condition: torch.Tensor) -> None:
    """What ``if not torch._is_all_true(valid): raise ValueError(...)`` does: torch.distributions
    validating a distribution's arguments and samples against its constraints."""
    if not bool(condition.all()):
        raise ValueError("a value failed validation (torch.distributions: an argument or sample outside "
                         "the distribution's constraints), checked when the compiled program ran")


@torchsymbol(assert_all_true, tags=("side_effect",))
def assert_all_true_(condition) -> None:
    return None
