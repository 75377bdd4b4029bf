"""Reductions: sum, mean, var/std, amax/amin, max/min, argmax, prod, logsumexp, all/any."""

from __future__ import annotations

import math

import torch

from thunder import prims
from thunder.core.proxies import TensorProxy, pyval
from thunder.torch.elementwise import (
    abs,
    add,
    div,
    exp,
    isinf,
    isnan,
    log,
    maximum,
    minimum,
    mul,
    ne,
    pow,
    sqrt,
    sub,
    where,
)
from thunder.torch.promotion import computation_dtype, to_dtype
from thunder.torch.registry import tensor_method, torchsymbol
from thunder.torch.shape import canonical_dim, reshape, unsqueeze


def reduction_dims(a, dim) -> tuple:
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(a.ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted({canonical_dim(d, a.ndim) for d in dims}))


def _keep(result, a, dims, keepdim: bool):
    """Re-inserts the reduced dims as size 1 when keepdim is set."""
    if not keepdim:
        return result
    shape = [1 if i in dims else s for i, s in enumerate(a.shape)]
    return reshape(result, shape)


def _reduce(prim, a, dims, keepdim, out_dtype):
    compute = computation_dtype(out_dtype)
    if a.ndim == 0:
        return to_dtype(a, out_dtype)
    result = prim(to_dtype(a, compute), dims)
    return _keep(to_dtype(result, out_dtype), a, dims, keepdim)


def _sum_dtype(a, dtype):
    if dtype is not None:
        return dtype
    return torch.int64 if not (a.dtype.is_floating_point or a.dtype.is_complex) else a.dtype


@torchsymbol(torch.sum, tensor_method("sum"), methods=["sum"])
def sum(a, dim=None, keepdim: bool = False, *, dtype=None):
    return _reduce(prims.sum, a, reduction_dims(a, dim), keepdim, _sum_dtype(a, dtype))


@torchsymbol(torch.prod, tensor_method("prod"), methods=["prod"])
def prod(a, dim=None, keepdim: bool = False, *, dtype=None):
    return _reduce(prims.prod, a, reduction_dims(a, dim), keepdim, _sum_dtype(a, dtype))


@torchsymbol(torch.mean, tensor_method("mean"), methods=["mean"])
def mean(a, dim=None, keepdim: bool = False, *, dtype=None):
    dtype = dtype or a.dtype
    if not (dtype.is_floating_point or dtype.is_complex):
        raise TypeError(f"mean(): could not infer output dtype. Input dtype must be either a floating "
                        f"point or complex dtype. Got: {dtype}")
    dims = reduction_dims(a, dim)
    n = math.prod(a.shape[d] for d in dims) if a.ndim else 1
    compute = computation_dtype(dtype)
    total = sum(to_dtype(a, compute), dims, keepdim)
    return to_dtype(div(total, n), dtype)


def _correction(unbiased, correction) -> float:
    if correction is not None:
        return pyval(correction)
    return 1 if unbiased is None or unbiased else 0


@torchsymbol(torch.var, tensor_method("var"), methods=["var"])
def var(a, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    if isinstance(dim, bool):  # var(a, unbiased)
        dim, unbiased = None, dim
    dims = reduction_dims(a, dim)
    out_dtype = a.dtype.to_real() if a.dtype.is_complex else a.dtype
    result = prims.var(to_dtype(a, computation_dtype(a.dtype)), dims, _correction(unbiased, correction))
    return _keep(to_dtype(result, out_dtype), a, dims, keepdim)


@torchsymbol(torch.std, tensor_method("std"), methods=["std"])
def std(a, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    dims = reduction_dims(a, dim)
    v = prims.var(to_dtype(a, computation_dtype(a.dtype)), dims, _correction(unbiased, correction))
    return _keep(to_dtype(sqrt(v), a.dtype), a, dims, keepdim)


@torchsymbol(torch.var_mean)
def var_mean(a, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    if isinstance(dim, bool):  # var_mean(a, unbiased)
        dim, unbiased = None, dim
    return var(a, dim, unbiased, keepdim, correction=correction), mean(a, dim, keepdim)


@torchsymbol(torch.std_mean)
def std_mean(a, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    if isinstance(dim, bool):  # std_mean(a, unbiased)
        dim, unbiased = None, dim
    return std(a, dim, unbiased, keepdim, correction=correction), mean(a, dim, keepdim)


@torchsymbol(torch.amax, tensor_method("amax"), methods=["amax"])
def amax(a, dim=(), keepdim: bool = False):
    return _reduce(prims.amax, a, reduction_dims(a, dim), keepdim, a.dtype)


@torchsymbol(torch.amin, tensor_method("amin"), methods=["amin"])
def amin(a, dim=(), keepdim: bool = False):
    return _reduce(prims.amin, a, reduction_dims(a, dim), keepdim, a.dtype)


def _argreduce(prim, a, dim, keepdim):
    if dim is None:
        result = prim(reshape(a, -1), 0) if a.ndim else prims.full((), 0, torch.int64, a.device)
        return reshape(result, [1] * a.ndim) if keepdim else result
    d = canonical_dim(dim, a.ndim)
    if a.ndim == 0:
        return prims.full((), 0, torch.int64, a.device)
    result = prim(a, d)
    return unsqueeze(result, d) if keepdim else result


@torchsymbol(torch.argmax, tensor_method("argmax"), methods=["argmax"])
def argmax(a, dim=None, keepdim: bool = False):
    return _argreduce(prims.argmax, a, dim, keepdim)


@torchsymbol(torch.argmin, tensor_method("argmin"), methods=["argmin"])
def argmin(a, dim=None, keepdim: bool = False):
    return _argreduce(prims.argmin, a, dim, keepdim)


def _max_or_min(reduce, argreduce, elementwise, a, dim, keepdim):
    if dim is None:
        return reduce(a)
    if isinstance(dim, TensorProxy):  # max(a, other)
        return elementwise(a, dim)
    values = reduce(a, dim, keepdim)
    indices = argreduce(a, dim, keepdim)
    return torch.return_types.max((values, indices)) if reduce is amax else torch.return_types.min((values, indices))


@torchsymbol(torch.max, tensor_method("max"), methods=["max"])
def max(a, dim=None, keepdim: bool = False):
    return _max_or_min(amax, argmax, maximum, a, dim, keepdim)


@torchsymbol(torch.min, tensor_method("min"), methods=["min"])
def min(a, dim=None, keepdim: bool = False):
    return _max_or_min(amin, argmin, minimum, a, dim, keepdim)


@torchsymbol(torch.logsumexp, tensor_method("logsumexp"), methods=["logsumexp"])
def logsumexp(a, dim, keepdim: bool = False):
    dims = reduction_dims(a, dim)
    compute = computation_dtype(a.dtype) if a.dtype.is_floating_point else torch.get_default_dtype()
    x = to_dtype(a, compute)
    m = amax(x, dims, True)
    m = where(isinf(m), 0.0, m)
    result = log(sum(exp(sub(x, m)), dims, True))
    result = add(result, m)
    result = result if keepdim else reshape(result, [s for i, s in enumerate(a.shape) if i not in dims])
    return to_dtype(result, a.dtype if a.dtype.is_floating_point else compute)


@torchsymbol(torch.all, tensor_method("all"), methods=["all"])
def all(a, dim=None, keepdim: bool = False):
    x = to_dtype(a, torch.bool)
    return _reduce(prims.amin, x, reduction_dims(x, dim), keepdim, torch.bool)


@torchsymbol(torch.any, tensor_method("any"), methods=["any"])
def any(a, dim=None, keepdim: bool = False):
    x = to_dtype(a, torch.bool)
    return _reduce(prims.amax, x, reduction_dims(x, dim), keepdim, torch.bool)


@torchsymbol(torch.count_nonzero, tensor_method("count_nonzero"), methods=["count_nonzero"])
def count_nonzero(a, dim=None):
    return sum(to_dtype(ne(a, 0), torch.int64), dim)


@torchsymbol(torch.linalg.vector_norm)
def vector_norm(a, ord=2, dim=None, keepdim: bool = False, *, dtype=None):
    x = abs(to_dtype(a, dtype) if dtype else a)
    ord = pyval(ord)
    if ord == 2:
        return sqrt(sum(mul(x, x), dim, keepdim))
    if ord == 1:
        return sum(x, dim, keepdim)
    if ord == float("inf"):
        return amax(x, () if dim is None else dim, keepdim)
    return pow(sum(pow(x, ord), dim, keepdim), 1.0 / ord)



@torchsymbol(torch.nansum, tensor_method("nansum"), methods=["nansum"])
def nansum(a, dim=None, keepdim: bool = False, *, dtype=None):
    return sum(where(isnan(a), 0, a) if a.dtype.is_floating_point else a, dim, keepdim, dtype=dtype)


@torchsymbol(torch.nanmean, tensor_method("nanmean"), methods=["nanmean"])
def nanmean(a, dim=None, keepdim: bool = False, *, dtype=None):
    if not (a.dtype.is_floating_point or a.dtype.is_complex):
        raise RuntimeError(f"nanmean(): expected input to have floating point or complex dtype but got {a.dtype}")
    dims = reduction_dims(a, dim)
    count = sum(to_dtype(ne(a, a), torch.int64), dims, keepdim)
    total = nansum(a, dims, keepdim, dtype=dtype)
    n = math.prod(a.shape[d] for d in dims) if a.ndim else 1
    return div(total, sub(n, count))
