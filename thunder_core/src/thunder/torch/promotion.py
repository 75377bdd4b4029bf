"""Type promotion and broadcasting, exactly as PyTorch does them.

PyTorch promotes by *category* (bool < integer < float < complex) with three tiers of operands:
dimensioned tensors, zero-dim tensors, and Python numbers. A lower tier only changes the result if
it brings a higher category. ``result_dtype`` folds the operands tier by tier and lets
``torch.result_type`` on tiny meta tensors decide each step, so the rules are PyTorch's own.
"""

from __future__ import annotations

import functools

import torch

from thunder import prims
from thunder.core.proxies import NumberProxy, Proxy, TensorProxy, pyval


@functools.lru_cache(maxsize=None)
def _meta(dtype: torch.dtype, zero_dim: bool) -> torch.Tensor:
    return torch.empty(() if zero_dim else (1,), dtype=dtype, device="meta")


def result_dtype(*operands) -> torch.dtype:
    """The dtype PyTorch gives an elementwise op on ``operands`` (tensors and numbers)."""
    for a in operands:
        if isinstance(a, Proxy) and not isinstance(a, (TensorProxy, NumberProxy)):
            a.value  # noqa: B018  (a number only known when the program runs raises DataDependentError)
    dims = [a.dtype for a in operands if isinstance(a, TensorProxy) and a.ndim > 0]
    zeros = [a.dtype for a in operands if isinstance(a, TensorProxy) and a.ndim == 0]
    numbers = [pyval(a) for a in operands if isinstance(a, (int, float, complex, bool, NumberProxy))]
    result, zero_dim = None, False
    if dims:
        result = functools.reduce(torch.promote_types, dims)
    if zeros:
        z = functools.reduce(torch.promote_types, zeros)
        if result is None:
            result, zero_dim = z, True
        else:
            result = torch.result_type(_meta(result, False), _meta(z, True))
    for n in numbers:
        if result is None:
            result, zero_dim = torch.result_type(torch.tensor(n, device="meta"), n), True
        else:
            result = torch.result_type(_meta(result, zero_dim), n)
    if result is None:
        raise prims.InvalidArgumentError("result_dtype needs at least one operand")
    return result


def computation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype PyTorch computes in internally: low-precision floats compute in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def to_dtype(x, dtype: torch.dtype):
    """Converts a tensor proxy (or leaves a number) to ``dtype``."""
    if isinstance(x, TensorProxy) and x.dtype != dtype:
        return prims.convert_element_type(x, dtype)
    return x


def broadcast_shapes(*shapes) -> tuple:
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError as e:
        raise prims.InvalidArgumentError(f"shapes {[list(s) for s in shapes]} cannot be broadcast together") from e


def broadcast_to(a: TensorProxy, shape) -> TensorProxy:
    shape = tuple(shape)
    if a.shape == shape:
        return a
    offset = len(shape) - a.ndim
    return prims.broadcast_in_dim(a, shape, tuple(range(offset, len(shape))))


def broadcast(*operands):
    """Broadcasts the tensor operands to their common shape; numbers stay numbers."""
    shape = broadcast_shapes(*(a.shape for a in operands if isinstance(a, TensorProxy)))
    return [broadcast_to(a, shape) if isinstance(a, TensorProxy) else a for a in operands]
