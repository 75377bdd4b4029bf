"""Which linears become FP8, and the layer they become.

Conversion changes each chosen ``nn.Linear`` in place (its class becomes ``FP8Linear``, a subclass,
so ``isinstance(m, nn.Linear)``, parameters and existing state_dict keys are unchanged). A
delayed-scaling layer also gets a persistent buffer ``fp8_amax_history`` [3, history_len] (rows:
input, weight, output gradient), so the scaling state is saved and restored with the model.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable

import torch
from thunder.compiled import ThunderModule
from torch import nn

from thunder_fp8 import scaling
from thunder_fp8.ops import fp8_linear


@dataclass(frozen=True)
class FP8Config:
    recipe: str = "tensorwise"
    emulate: bool = False
    history_len: int = 16
    margin: int = 0
    grad_dtype: torch.dtype | None = None  # None: e5m2, except row-wise (its kernels take e4m3)
    skip: tuple[str, ...] = ("lm_head",)   # fnmatch patterns of module names (or their last part)
    include: tuple[str, ...] = ("*",)
    module_types: tuple[type, ...] = (nn.Linear,)
    filter_fn: Callable[[str, nn.Module], bool] | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.recipe not in scaling.RECIPES:
            raise ValueError(f"unknown FP8 recipe {self.recipe!r}; choose one of {', '.join(scaling.RECIPES)}")
        if self.grad_dtype not in (None, scaling.E4M3, scaling.E5M2):
            raise ValueError(f"grad_dtype must be torch.float8_e4m3fn or torch.float8_e5m2, not {self.grad_dtype}")
        if self.history_len < 1:
            raise ValueError("history_len must be at least 1")

    @property
    def resolved_grad_dtype(self) -> torch.dtype:
        if self.grad_dtype is not None:
            return self.grad_dtype
        return scaling.E4M3 if self.recipe == "rowwise" else scaling.E5M2

    def wants(self, name: str, module: nn.Module) -> bool:
        """Whether the layer called ``name`` is converted: a listed type (exactly: subclasses with
        their own forward are left alone), FP8-friendly dimensions (multiples of 16, what the FP8
        tensor-core kernels require), included and not skipped, and accepted by ``filter_fn``."""
        if isinstance(module, FP8Linear) or _plain_type(module) not in self.module_types:
            return False
        if module.in_features % 16 or module.out_features % 16:
            return False
        last = name.rsplit(".", 1)[-1]
        if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(last, p) for p in self.skip):
            return False
        if not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return self.filter_fn is None or bool(self.filter_fn(name, module))


class FP8Linear(nn.Linear):
    """An ``nn.Linear`` whose matmuls run in FP8 (see ``thunder_fp8.scaling`` for the recipes)."""

    fp8_config: FP8Config

    def forward(self, input):
        cfg = self.fp8_config
        history = self.fp8_amax_history if cfg.recipe == "delayed" else None
        return fp8_linear(input, self.weight, self.bias, history, cfg.recipe, cfg.margin, cfg.resolved_grad_dtype,
                          cfg.emulate)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp8={self.fp8_config.recipe}{', emulated' if self.fp8_config.emulate else ''}"


def _plain_type(module: nn.Module) -> type:
    """The user's class of ``module`` (a compiled module's class derives from ThunderModule and it)."""
    cls = type(module)
    return cls.__bases__[1] if issubclass(cls, ThunderModule) and len(cls.__bases__) == 2 else cls


def convert_to_fp8(model: nn.Module, config: FP8Config | None = None) -> list[str]:
    """Converts the chosen linears of ``model`` in place; returns their names."""
    config = config or FP8Config()
    converted = []
    for name, module in list(model.named_modules()):
        if not config.wants(name, module):
            continue
        if isinstance(module, ThunderModule):
            # the compiled module itself is the linear: keep its compiled __call__, take FP8's forward
            module.__class__ = type(f"{type(module).__name__}[fp8]", (type(module), FP8Linear), {})
        else:
            module.__class__ = FP8Linear
        module.fp8_config = config
        if config.recipe == "delayed":
            module.register_buffer("fp8_amax_history", torch.zeros(3, config.history_len, dtype=torch.float32,
                                                                   device=module.weight.device))
        converted.append(name)
    return converted
