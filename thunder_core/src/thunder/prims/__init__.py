"""Primitive operations: the smallest vocabulary every torch-language op decomposes into.

Each primitive has a meta function that checks its inputs and computes its outputs' metadata.
Primitives are deliberately strict (JAX-style): elementwise primitives take tensors of one shape
and one dtype (the torch language does broadcasting and type promotion explicitly), shapes are
explicit tuples, and nothing is implicit. Executors implement primitives; fusion executors and
autodiff reason about them.
"""

from __future__ import annotations

import builtins
import math

import torch

from thunder.core.proxies import NumberProxy, TensorProxy, pyval
from thunder.core.symbol import Symbol

ALL: dict[str, Symbol] = {}


class _PrimsNamespace:
    """What ``prims`` names in a printed trace."""


namespace = _PrimsNamespace()


def make_prim(name: str, meta, *, tags: tuple = ()) -> Symbol:
    sym = Symbol(name, meta, module="prims", is_prim=True, module_object=namespace, tags=tags)
    ALL[name] = sym
    setattr(namespace, name, sym)
    # prims.add, prims.sum, ... as module attributes; they shadow builtins here, so this module
    # spells those builtins.sum, builtins.max
    globals()[name] = sym
    return sym


class InvalidArgumentError(ValueError, RuntimeError):
    """An operation given arguments it does not take (shapes that do not broadcast or multiply, an
    unknown mode). A RuntimeError, as torch raises for these, so that a program's ``except
    RuntimeError`` behaves as in eager; and a ValueError."""


def _check(cond: bool, msg) -> None:
    if not cond:
        raise InvalidArgumentError(msg() if callable(msg) else msg)


def _requires_grad(*args) -> bool:
    return torch.is_grad_enabled() and any(isinstance(a, TensorProxy) and a.requires_grad for a in args)


def _new(shape, dtype, device, *inputs) -> TensorProxy:
    return TensorProxy(shape, dtype, device, _requires_grad(*inputs))


# -- elementwise ------------------------------------------------------------------------------

def _elementwise_meta(name: str, output_dtype=None):
    """Meta for elementwise prims: tensor operands share shape, dtype and device; numbers are
    scalars. ``output_dtype`` overrides the result dtype (comparisons give bool)."""

    def meta(*args):
        tensors = [a for a in args if isinstance(a, TensorProxy)]
        _check(tensors, f"prims.{name} needs at least one tensor operand")
        first = tensors[0]
        for t in tensors[1:]:
            _check(t.shape == first.shape, lambda: f"prims.{name}: shapes {list(first.shape)} and "
                   f"{list(t.shape)} differ (broadcast first)")
            _check(t.dtype == first.dtype, lambda: f"prims.{name}: dtypes {first.dtype} and {t.dtype} "
                   "differ (convert first)")
        for a in args:
            _check(isinstance(a, (TensorProxy, NumberProxy, int, float, complex, bool)),
                   lambda: f"prims.{name}: unexpected operand {a!r}")
        return _new(first.shape, output_dtype or first.dtype, first.device, *tensors)

    return meta


UNARY = ("abs neg exp exp2 expm1 log log1p log2 log10 sqrt rsqrt sin cos tan asin acos atan sinh "
         "cosh tanh asinh acosh atanh erf erfc erfinv lgamma digamma sign floor ceil round trunc "
         "reciprocal sigmoid logical_not bitwise_not real imag").split()
UNARY_PREDICATES = "isnan isinf isfinite signbit".split()
BINARY = ("add sub mul div floor_divide remainder fmod pow maximum minimum atan2 copysign "
          "bitwise_and bitwise_or bitwise_xor bitwise_left_shift bitwise_right_shift "
          "nextafter").split()
COMPARISONS = "eq ne lt le gt ge logical_and logical_or logical_xor".split()

for _n in UNARY + BINARY:
    make_prim(_n, _elementwise_meta(_n), tags=("elementwise",))
for _n in UNARY_PREDICATES + COMPARISONS:
    make_prim(_n, _elementwise_meta(_n, torch.bool), tags=("elementwise",))


def _polygamma_meta(n, a):
    """The n-th derivative of digamma (digamma's and polygamma's own derivative need it)."""
    _check(isinstance(pyval(n), int) and pyval(n) >= 0, "prims.polygamma: n must be a non-negative int")
    return _new(a.shape, a.dtype, a.device, a)


polygamma = make_prim("polygamma", _polygamma_meta, tags=("elementwise",))


def _where_meta(pred, a, b):
    shapes = {x.shape for x in (pred, a, b) if isinstance(x, TensorProxy)}
    _check(len(shapes) == 1, "prims.where: operands must have one shape")
    _check(isinstance(pred, TensorProxy) and pred.dtype == torch.bool, "prims.where: pred must be a bool tensor")
    dtypes = {x.dtype for x in (a, b) if isinstance(x, TensorProxy)}
    _check(len(dtypes) <= 1, "prims.where: a and b must have one dtype")
    dtype = dtypes.pop() if dtypes else torch.get_default_dtype()
    return _new(pred.shape, dtype, pred.device, a, b)


where = make_prim("where", _where_meta, tags=("elementwise",))


def _convert_element_type_meta(a, dtype):
    return _new(a.shape, dtype, a.device, a) if dtype.is_floating_point or dtype.is_complex \
        else TensorProxy(a.shape, dtype, a.device, False)


convert_element_type = make_prim("convert_element_type", _convert_element_type_meta, tags=("elementwise",))


def _device_put_meta(a, device):
    return _new(a.shape, a.dtype, torch.device(device), a)


device_put = make_prim("device_put", _device_put_meta)  # a copy on another device

# -- shapes -----------------------------------------------------------------------------------

# shape primitives whose output may be a view of their input's memory
VIEW_PRIMS = frozenset({"broadcast_in_dim", "reshape", "transpose", "slice", "squeeze"})


def _broadcast_in_dim_meta(a, shape, broadcast_dimensions):
    _check(len(broadcast_dimensions) == a.ndim, "prims.broadcast_in_dim: one dimension per input dim")
    for d, s in zip(broadcast_dimensions, a.shape):
        _check(s == 1 or s == shape[d], lambda: f"prims.broadcast_in_dim: cannot broadcast "
               f"{list(a.shape)} to {list(shape)}")
    return _new(shape, a.dtype, a.device, a)


broadcast_in_dim = make_prim("broadcast_in_dim", _broadcast_in_dim_meta)


def _reshape_meta(a, shape):
    _check(math.prod(shape) == a.numel(), lambda: f"prims.reshape: cannot reshape {list(a.shape)} "
           f"to {list(shape)}")
    return _new(shape, a.dtype, a.device, a)


reshape = make_prim("reshape", _reshape_meta)


def _transpose_meta(a, permutation):
    _check(sorted(permutation) == list(range(a.ndim)), "prims.transpose: not a permutation")
    return _new([a.shape[p] for p in permutation], a.dtype, a.device, a)


transpose = make_prim("transpose", _transpose_meta)


def _slice_meta(a, start_indices, end_indices, strides=None):
    strides = strides or [1] * a.ndim
    shape = [builtins.max(0, (e - s + st - 1) // st) for s, e, st in zip(start_indices, end_indices, strides)]
    return _new(shape, a.dtype, a.device, a)


make_prim("slice", _slice_meta)


def _squeeze_meta(a, dims):
    _check(all(a.shape[d] == 1 for d in dims), "prims.squeeze: only size-1 dims can be squeezed")
    return _new([s for i, s in enumerate(a.shape) if i not in dims], a.dtype, a.device, a)


squeeze = make_prim("squeeze", _squeeze_meta)


def _cat_meta(tensors, dim):
    first = tensors[0]
    shape = list(first.shape)
    shape[dim] = builtins.sum(t.shape[dim] for t in tensors)
    return _new(shape, first.dtype, first.device, *tensors)


cat = make_prim("cat", _cat_meta)


def _flip_meta(a, dims):
    return _new(a.shape, a.dtype, a.device, a)


flip = make_prim("flip", _flip_meta)


def _pad_meta(a, padding_value, padding_config):
    """Pads (or, with negative amounts, crops) each dim by its (low, high) pair."""
    shape = [lo + hi + s for s, (lo, hi) in zip(a.shape, padding_config)]
    return _new(shape, a.dtype, a.device, a)


pad = make_prim("pad", _pad_meta)


def _take_meta(a, index, dim):
    """index_select: picks the slices of ``a`` along ``dim`` named by the 1-D ``index``."""
    shape = list(a.shape)
    shape[dim] = index.shape[0] if index.ndim else 1
    return _new(shape, a.dtype, a.device, a)


take = make_prim("take", _take_meta)


def _take_along_axis_meta(a, index, dim):
    """gather: the output has the index's shape."""
    return _new(index.shape, a.dtype, a.device, a)


take_along_axis = make_prim("take_along_axis", _take_along_axis_meta)


def _scatter_add_meta(a, index, value, dim):
    return _new(a.shape, a.dtype, a.device, a, value)


scatter_add = make_prim("scatter_add", _scatter_add_meta)


def _index_add_meta(a, index, value, dim):
    return _new(a.shape, a.dtype, a.device, a, value)


index_add = make_prim("index_add", _index_add_meta)

# -- reductions -------------------------------------------------------------------------------


def _reduction_meta(name: str):
    def meta(a, dims):
        _check(all(0 <= d < builtins.max(a.ndim, 1) for d in dims), f"prims.{name}: dims out of range")
        shape = [s for i, s in enumerate(a.shape) if i not in dims]
        return _new(shape, a.dtype, a.device, a)

    return meta


for _n in ("sum", "prod", "amax", "amin"):
    make_prim(_n, _reduction_meta(_n), tags=("reduction",))


def _var_meta(a, dims, correction):
    shape = [s for i, s in enumerate(a.shape) if i not in dims]
    dtype = a.dtype.to_real() if a.dtype.is_complex else a.dtype
    return _new(shape, dtype, a.device, a)


var = make_prim("var", _var_meta, tags=("reduction",))


def _argreduction_meta(a, dim):
    shape = [] if dim is None else [s for i, s in enumerate(a.shape) if i != dim]
    return TensorProxy(shape, torch.int64, a.device, False)


argmax = make_prim("argmax", _argreduction_meta, tags=("reduction",))
argmin = make_prim("argmin", _argreduction_meta, tags=("reduction",))

# -- linear algebra ---------------------------------------------------------------------------


def _matmul_meta(a, b):
    _check(a.ndim >= 1 and b.ndim >= 1, "prims.matmul: operands must have at least 1 dimension")
    _check(a.dtype == b.dtype, lambda: f"prims.matmul: dtypes {a.dtype} and {b.dtype} differ")
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    _check(k_a == k_b, lambda: f"prims.matmul: shapes {list(a.shape)} and {list(b.shape)} "
           "cannot be multiplied")
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    shape = list(batch) + ([a.shape[-2]] if a.ndim >= 2 else []) + ([b.shape[-1]] if b.ndim >= 2 else [])
    return _new(shape, a.dtype, a.device, a, b)


matmul = make_prim("matmul", _matmul_meta)


def _linear_meta(a, w, bias):
    _check(a.shape[-1] == w.shape[-1], lambda: f"prims.linear: input {list(a.shape)} and weight "
           f"{list(w.shape)} do not match")
    _check(a.dtype == w.dtype, lambda: f"prims.linear: dtypes {a.dtype} and {w.dtype} differ")
    shape = list(a.shape[:-1]) + ([w.shape[0]] if w.ndim == 2 else [])
    return _new(shape, a.dtype, a.device, a, w, bias)


linear = make_prim("linear", _linear_meta)

# -- creation and randomness ------------------------------------------------------------------


def _full_meta(shape, fill_value, dtype, device):
    return TensorProxy(shape, dtype, device, False)


full = make_prim("full", _full_meta)


def _iota_meta(length, start, step, dtype, device):
    return TensorProxy([pyval(length)], dtype, device, False)


iota = make_prim("iota", _iota_meta)


def _uniform_meta(shape, low, high, dtype, device):
    return TensorProxy(shape, dtype, device, False)


uniform = make_prim("uniform", _uniform_meta, tags=("random",))


def _normal_meta(shape, mean, std, dtype, device):
    return TensorProxy(shape, dtype, device, False)


normal = make_prim("normal", _normal_meta, tags=("random",))


def _bernoulli_meta(shape, p, dtype, device):
    """1 with probability ``p``, else 0 (as dropout draws its mask)."""
    return TensorProxy(shape, dtype, device, False)


bernoulli = make_prim("bernoulli", _bernoulli_meta, tags=("random",))


def _bernoulli_like_meta(a, p):
    """A mask like ``bernoulli`` with ``a``'s shape, dtype, device and memory layout: drawn in the
    order of ``a``'s memory, as eager's dropout draws it (``empty_like(a).bernoulli_(p)``), so a
    permuted input gets eager's mask. No gradient flows to ``a``."""
    return TensorProxy(a.shape, a.dtype, a.device, False)


bernoulli_like = make_prim("bernoulli_like", _bernoulli_like_meta, tags=("random",))
