"""The torch executor: runs every symbol with PyTorch, so every trace can run.

torch-language and opaque symbols run as the torch callable they came from (the final trace shows
``torch.nn.functional.linear(...)``); primitives run as the torch function that matches them, or as
a short helper below (printed as ``torchex.<name>``) where torch's signature differs.
"""

from __future__ import annotations

import builtins
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from thunder import prims
from thunder.core.symbol import BoundSymbol
from thunder.executors.base import OperatorExecutor
from thunder.torch import SYMBOL_TO_TORCH

helpers = SimpleNamespace()


def helper(fn):
    setattr(helpers, fn.__name__, fn)
    return fn


def _tensor(x, like: torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype, device=like.device)


def _binary_with_scalars(fn):
    """Wraps a torch function that needs tensor operands so prims may pass Python numbers."""
    def impl(a, b):
        like = a if isinstance(a, torch.Tensor) else b
        return fn(_tensor(a, like), _tensor(b, like))

    impl.__name__ = fn.__name__
    return helper(impl)


@helper
def div(a, b):
    dtype = (a if isinstance(a, torch.Tensor) else b).dtype
    if dtype.is_floating_point or dtype.is_complex:
        return torch.true_divide(a, b)
    return torch.div(a, b, rounding_mode="trunc")


@helper
def broadcast_in_dim(a, shape, broadcast_dimensions):
    view_shape = [1] * len(shape)
    for d, s in zip(broadcast_dimensions, a.shape):
        view_shape[d] = s
    return a.reshape(view_shape).expand(shape)


@helper
def slice(a, start_indices, end_indices, strides=None):
    strides = strides or [1] * a.ndim
    return a[tuple(builtins.slice(s, e, st) for s, e, st in zip(start_indices, end_indices, strides))]


@helper
def pad(a, padding_value, padding_config):
    flat = [amount for lo_hi in reversed(padding_config) for amount in lo_hi]
    return F.pad(a, flat, value=padding_value)


@helper
def take(a, index, dim):
    return torch.index_select(a, dim, index.reshape(-1) if index.ndim == 0 else index)


@helper
def take_along_axis(a, index, dim):
    return torch.gather(a, dim, index)


@helper
def scatter_add(a, index, value, dim):
    return torch.scatter_add(a, dim, index, value)


@helper
def index_add(a, index, value, dim):
    return torch.index_add(a, dim, index, value)


@helper
def prod(a, dims):
    for d in sorted(dims, reverse=True):
        a = torch.prod(a, d)
    return a


@helper
def var(a, dims, correction):
    return torch.var(a, dims, correction=correction)


@helper
def full(shape, fill_value, dtype, device):
    return torch.full(shape, fill_value, dtype=dtype, device=device)


@helper
def iota(length, start, step, dtype, device):
    if dtype.is_floating_point:
        return torch.arange(length, dtype=torch.float64, device=device).mul_(step).add_(start).to(dtype)
    return torch.arange(start, start + step * length, step, dtype=dtype, device=device)


@helper
def uniform(shape, low, high, dtype, device):
    return torch.empty(shape, dtype=dtype, device=device).uniform_(low, high)


@helper
def normal(shape, mean, std, dtype, device):
    return torch.empty(shape, dtype=dtype, device=device).normal_(mean, std)


@helper
def bernoulli(shape, p, dtype, device):
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(p)


@helper
def bernoulli_like(a, p):
    return torch.empty_like(a).bernoulli_(p)


@helper
def convert_element_type(a, dtype):
    return a.to(dtype)


@helper
def device_put(a, device):
    return a.to(device)


@helper
def cross_entropy_with_lse(input, target, ignore_index, reduction):
    """``ltorch.cross_entropy_with_lse`` in three torch calls rather than its decomposition's
    eight: the log-sum-exp, the log-probabilities from it, torch's nll_loss."""
    class_dim = 1 if input.ndim > 1 else 0
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    lse = torch.logsumexp(x, class_dim, keepdim=True)
    logp = (x - lse).to(input.dtype)
    return F.nll_loss(logp, target, ignore_index=ignore_index, reduction=reduction), lse


@helper
def cat(tensors, dim):
    """One piece is copied in its own layout. (Rotary embedding over a whole attention head
    concatenates its result with the head's empty rest: the copy keeps the transposed layout the
    result has, so the attention output that follows it in that layout views back into
    (batch, tokens, channels) without another copy; ``torch.cat`` would make it contiguous.)"""
    return tensors[0].clone() if len(tensors) == 1 else torch.cat(tensors, dim)


_PRIM_TO_TORCH = {
    "transpose": torch.permute, "reshape": torch.reshape, "squeeze": torch.squeeze,
    "flip": torch.flip, "amax": torch.amax, "amin": torch.amin, "sum": torch.sum, "argmax": torch.argmax,
    "argmin": torch.argmin, "matmul": torch.matmul, "linear": F.linear, "where": torch.where,
    "maximum": _binary_with_scalars(torch.maximum), "minimum": _binary_with_scalars(torch.minimum),
    "atan2": _binary_with_scalars(torch.atan2), "copysign": _binary_with_scalars(torch.copysign),
    "nextafter": _binary_with_scalars(torch.nextafter),
    "logical_and": _binary_with_scalars(torch.logical_and),
    "logical_or": _binary_with_scalars(torch.logical_or),
    "logical_xor": _binary_with_scalars(torch.logical_xor),
}


def _printed_name(fn) -> tuple[str, str] | None:
    """Where ``fn`` lives under ``torch`` (so the trace can call it by that name), if anywhere."""
    if isinstance(fn, torch._ops.OpOverload):
        return f"torch.ops.{fn.namespace}.{fn._opname}", fn._overloadname
    name = getattr(fn, "__name__", None)
    if name is None:
        return None
    for module_name, module in (("torch", torch), ("torch.nn.functional", F), ("torch.Tensor", torch.Tensor),
                                ("torch.special", torch.special), ("torch.linalg", torch.linalg),
                                ("torch.fft", torch.fft)):
        if getattr(module, name, None) is fn:
            return module_name, name
    return None


class TorchExecutor(OperatorExecutor):
    """Claims everything: torch-language and opaque symbols as their torch callables, primitives
    as torch functions or helpers. Registration of opaque symbols happens on first sight."""

    def __init__(self):
        super().__init__("torch", priority=-1000)
        for name, sym in prims.ALL.items():
            fn = _PRIM_TO_TORCH.get(name) or getattr(helpers, name, None) or getattr(torch, name)
            self._register_callable(sym.id, fn)
        self._register_callable("ltorch.cross_entropy_with_lse", helpers.cross_entropy_with_lse)

    def _register_callable(self, symbol_id: str, fn) -> None:
        where = _printed_name(fn)
        if where is not None:
            self.register(symbol_id, fn, printed_as=(where[0], where[1], torch))
        elif getattr(helpers, getattr(fn, "__name__", ""), None) is fn:
            self.register(symbol_id, fn, printed_as=("torchex", fn.__name__, helpers))
        else:
            attr = symbol_id.replace(".", "_")
            setattr(helpers, attr, fn)
            self.register(symbol_id, fn, printed_as=("torchex", attr, helpers))

    def can_execute(self, bsym: BoundSymbol) -> bool:
        if bsym.sym.id not in self._implementations:
            fn = SYMBOL_TO_TORCH.get(bsym.sym.id)
            if fn is None:
                return False
            self._register_callable(bsym.sym.id, fn)
        return True


torch_executor = TorchExecutor()
