"""Elementwise torch ops: type promotion, broadcasting, then one primitive.

Low-precision floats (float16, bfloat16) are computed in float32 and converted back, as PyTorch's
kernels do internally, so fused code gives eager's numbers.
"""

from __future__ import annotations

import math

import torch

from thunder import prims
from thunder.core.proxies import TENSOR_METHODS, NumberProxy, TensorProxy, pyval
from thunder.torch.promotion import broadcast, broadcast_to, computation_dtype, result_dtype, to_dtype
from thunder.torch.registry import ALL, method_only, tensor_method, torchsymbol


def _is_float(dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _unary(prim, a, *, float_only: bool = False):
    dtype = a.dtype
    if float_only and not _is_float(dtype):
        dtype = torch.get_default_dtype()
    compute = computation_dtype(dtype)
    return to_dtype(prim(to_dtype(a, compute)), dtype)


def _number_as_tensor(a, b):
    """Two numbers given to a torch function (``torch.div(seq_len, window, rounding_mode="trunc")``):
    eager computes on a 0-d CPU tensor holding the first, and so does the trace."""
    if isinstance(a, TensorProxy) or isinstance(b, TensorProxy):
        return a
    value = pyval(a)
    dtype = {bool: torch.bool, int: torch.int64, complex: torch.complex64}.get(type(value), torch.get_default_dtype())
    return prims.full((), a, dtype, torch.device("cpu"))


def _binary(prim, a, b, *, float_only: bool = False):
    a = _number_as_tensor(a, b)
    dtype = result_dtype(a, b)
    if float_only and not _is_float(dtype):
        dtype = torch.get_default_dtype()
    compute = computation_dtype(dtype)
    a, b = broadcast(to_dtype(a, compute), to_dtype(b, compute))
    return to_dtype(prim(a, b), dtype)


def _compare(prim, a, b):
    dtype = result_dtype(a, b)
    a, b = broadcast(to_dtype(a, dtype), to_dtype(b, dtype))
    return prim(a, b)


# -- unary ------------------------------------------------------------------------------------

def _register_unary(name: str, *, float_only: bool, prim_name: str | None = None):
    prim = prims.ALL[prim_name or name]
    callables = [c for c in (getattr(torch, name, None), tensor_method(name),
                             getattr(torch.special, name, None)) if c is not None]

    def op(a):
        return _unary(prim, a, float_only=float_only)

    op.__name__ = name
    op.__doc__ = f"torch.{name}, elementwise."
    return torchsymbol(*callables, methods=[name])(op)


for _name in ("exp exp2 expm1 log log1p log2 log10 sqrt rsqrt sin cos tan asin acos atan sinh cosh tanh "
              "asinh acosh atanh erf erfc erfinv lgamma digamma sigmoid reciprocal").split():
    _register_unary(_name, float_only=True)
for _name in "abs neg sign floor ceil trunc bitwise_not".split():
    _register_unary(_name, float_only=False)


@torchsymbol(torch.round, tensor_method("round"), methods=["round"])
def round(a, *, decimals: int = 0):
    """With decimals, as ATen does: round(a * 10**d) / 10**d, or round(a / 10**-d) * 10**-d for
    negative d (dividing by an exact power of ten rounds differently from multiplying by 10**d)."""
    decimals = pyval(decimals)
    if decimals == 0:
        return _unary(prims.round, a)
    if decimals > 0:
        scale = 10.0 ** decimals
        return div(_unary(prims.round, mul(a, scale)), scale)
    scale = 10.0 ** -decimals
    return mul(_unary(prims.round, div(a, scale)), scale)


@torchsymbol(torch.polygamma, torch.special.polygamma)
def polygamma(n, a):
    n = pyval(n)
    if not isinstance(n, int) or n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    dtype = a.dtype if _is_float(a.dtype) else torch.get_default_dtype()
    compute = computation_dtype(dtype)
    return to_dtype(prims.polygamma(n, to_dtype(a, compute)), dtype)


@method_only("polygamma")
def polygamma_method(a, n):
    return polygamma(n, a)


@torchsymbol(torch.logical_not, tensor_method("logical_not"), methods=["logical_not"])
def logical_not(a):
    return prims.logical_not(to_dtype(a, torch.bool))


for _name in "isnan isinf isfinite signbit".split():
    def _predicate(a, _prim=prims.ALL[_name]):
        return _prim(a)

    _predicate.__name__ = _name
    torchsymbol(getattr(torch, _name), tensor_method(_name), methods=[_name])(_predicate)


# -- binary -----------------------------------------------------------------------------------

@torchsymbol(torch.add, tensor_method("add"), methods=["add", "__add__", "__radd__"])
def add(a, b, *, alpha=None):
    if alpha is not None and pyval(alpha) != 1:
        b = mul(b, alpha)
    return _binary(prims.add, a, b)


@torchsymbol(torch.sub, tensor_method("sub"), torch.subtract, methods=["sub", "subtract", "__sub__"])
def sub(a, b, *, alpha=None):
    if alpha is not None and pyval(alpha) != 1:
        b = mul(b, alpha)
    return _binary(prims.sub, a, b)


@torchsymbol(torch.rsub, methods=["__rsub__"])
def rsub(a, b, *, alpha=None):
    return sub(b, a, alpha=alpha)


@torchsymbol(torch.mul, tensor_method("mul"), torch.multiply, methods=["mul", "multiply", "__mul__", "__rmul__"])
def mul(a, b):
    return _binary(prims.mul, a, b)


@torchsymbol(torch.div, tensor_method("div"), torch.divide, torch.true_divide,
             methods=["div", "divide", "true_divide", "__truediv__"])
def div(a, b, *, rounding_mode: str | None = None):
    if rounding_mode is None:
        return _binary(prims.div, a, b, float_only=True)
    if rounding_mode == "floor":
        return floor_divide(a, b)
    if rounding_mode == "trunc":
        dtype = result_dtype(a, b)
        if _is_float(dtype):
            return trunc(_binary(prims.div, a, b))
        return _binary(prims.div, a, b)  # integer division truncates
    raise prims.InvalidArgumentError(f"div: rounding_mode must be None, 'trunc' or 'floor', not {rounding_mode!r}")


@torchsymbol(methods=["__rtruediv__"])
def rtruediv(a, b):
    return div(b, a)


@torchsymbol(torch.floor_divide, tensor_method("floor_divide"), methods=["floor_divide", "__floordiv__"])
def floor_divide(a, b):
    return _binary(prims.floor_divide, a, b)


@torchsymbol(methods=["__rfloordiv__"])
def rfloordiv(a, b):
    return floor_divide(b, a)


@torchsymbol(torch.remainder, tensor_method("remainder"), methods=["remainder", "__mod__"])
def remainder(a, b):
    return _binary(prims.remainder, a, b)


@torchsymbol(methods=["__rmod__"])
def rmod(a, b):
    return remainder(b, a)


@torchsymbol(torch.fmod, tensor_method("fmod"), methods=["fmod"])
def fmod(a, b):
    return _binary(prims.fmod, a, b)


@torchsymbol(torch.pow, tensor_method("pow"), methods=["pow", "__pow__"])
def pow(a, b):
    if isinstance(a, TensorProxy) and isinstance(b, (int, float, NumberProxy)) and not isinstance(b, bool):
        if pyval(b) == 2:
            return mul(a, a)
        if pyval(b) == 1:
            return to_dtype(a, result_dtype(a, b))
    return _binary(prims.pow, a, b)


@torchsymbol(methods=["__rpow__"])
def rpow(a, b):
    return pow(b, a)


@torchsymbol(torch.maximum, tensor_method("maximum"), methods=["maximum"])
def maximum(a, b):
    return _binary(prims.maximum, a, b)


@torchsymbol(torch.minimum, tensor_method("minimum"), methods=["minimum"])
def minimum(a, b):
    return _binary(prims.minimum, a, b)


@torchsymbol(torch.atan2, tensor_method("atan2"), methods=["atan2"])
def atan2(a, b):
    return _binary(prims.atan2, a, b, float_only=True)


for _name, _dunders in (("bitwise_and", ["__and__", "__rand__"]), ("bitwise_or", ["__or__", "__ror__"]),
                        ("bitwise_xor", ["__xor__", "__rxor__"]),
                        ("bitwise_left_shift", ["__lshift__"]), ("bitwise_right_shift", ["__rshift__"])):
    def _bitwise(a, b, _prim=prims.ALL[_name]):
        return _binary(_prim, a, b)

    _bitwise.__name__ = _name
    torchsymbol(getattr(torch, _name), tensor_method(_name), methods=[_name, *_dunders])(_bitwise)

for _name in ("logical_and", "logical_or", "logical_xor"):
    def _logical(a, b, _prim=prims.ALL[_name]):
        a, b = broadcast(to_dtype(a, torch.bool), to_dtype(b, torch.bool))
        return _prim(a, b)

    _logical.__name__ = _name
    torchsymbol(getattr(torch, _name), tensor_method(_name), methods=[_name])(_logical)

for _name, _aliases in (("eq", ["__eq__"]), ("ne", ["__ne__", "not_equal"]), ("lt", ["__lt__", "less"]),
                        ("le", ["__le__", "less_equal"]), ("gt", ["__gt__", "greater"]),
                        ("ge", ["__ge__", "greater_equal"])):
    def _comparison(a, b, _prim=prims.ALL[_name]):
        return _compare(_prim, a, b)

    _comparison.__name__ = _name
    torchsymbol(getattr(torch, _name), tensor_method(_name),
                *[getattr(torch, n) for n in _aliases if hasattr(torch, n)],
                methods=[_name, *_aliases])(_comparison)


# -- ternary and friends ----------------------------------------------------------------------

@torchsymbol(torch.where)
def where(condition, input=None, other=None):
    if input is None and other is None:
        raise NotImplementedError("torch.where(condition) with one argument has a data-dependent shape")
    dtype = result_dtype(input, other)
    condition, input, other = broadcast(to_dtype(condition, torch.bool), to_dtype(input, dtype),
                                        to_dtype(other, dtype))
    if not isinstance(input, TensorProxy) and not isinstance(other, TensorProxy):
        input = prims.full(condition.shape, input, dtype, condition.device)
    return prims.where(condition, input, other)


@method_only("where")
def where_method(a, condition, other):
    return where(condition, a, other)


@torchsymbol(torch.masked_fill, tensor_method("masked_fill"), methods=["masked_fill"])
def masked_fill(a, mask, value):
    if isinstance(value, TensorProxy):
        value = to_dtype(value, a.dtype)
    elif a.dtype.is_floating_point:
        value = float(pyval(value))
    elif a.dtype == torch.bool:
        value = bool(pyval(value))
    elif not a.dtype.is_complex:
        value = int(pyval(value))
    mask, a = broadcast(to_dtype(mask, torch.bool), a)
    if isinstance(value, TensorProxy):
        value = broadcast_to(value, a.shape)
    return prims.where(mask, value, a)


@torchsymbol(torch.clamp, tensor_method("clamp"), torch.clip, methods=["clamp", "clip"])
def clamp(a, min=None, max=None):
    if min is None and max is None:
        raise prims.InvalidArgumentError("torch.clamp: at least one of 'min' or 'max' must not be None")
    result = a
    if min is not None:
        result = where(ne(result, result), result, maximum(result, min)) if _is_float(a.dtype) else maximum(result, min)
    if max is not None:
        result = where(ne(result, result), result, minimum(result, max)) if _is_float(a.dtype) else minimum(result, max)
    return to_dtype(result, result_dtype(a, *(x for x in (min, max) if x is not None)))


@torchsymbol(torch.lerp, tensor_method("lerp"), methods=["lerp"])
def lerp(start, end, weight):
    return add(start, mul(weight, sub(end, start)))


@torchsymbol(torch.addcmul, tensor_method("addcmul"), methods=["addcmul"])
def addcmul(a, t1, t2, *, value=1):
    return add(a, mul(mul(t1, t2), value))


@torchsymbol(torch.addcdiv, tensor_method("addcdiv"), methods=["addcdiv"])
def addcdiv(a, t1, t2, *, value=1):
    return add(a, mul(div(t1, t2), value))


# -- activations ------------------------------------------------------------------------------

@torchsymbol(torch.nn.functional.relu, torch.relu, tensor_method("relu"), methods=["relu"])
def relu(a, inplace: bool = False):
    return where(le(a, 0), 0, a)


@torchsymbol(torch.nn.functional.gelu)
def gelu(a, approximate: str = "none"):
    if approximate == "tanh":
        inner = mul(math.sqrt(2 / math.pi), add(a, mul(0.044715, mul(a, mul(a, a)))))
        return mul(mul(0.5, a), add(1, tanh(inner)))
    return mul(mul(0.5, a), add(1, erf(mul(a, 1 / math.sqrt(2)))))


@torchsymbol(torch.nn.functional.silu)
def silu(a, inplace: bool = False):
    return mul(a, sigmoid(a))


@torchsymbol(torch.nn.functional.leaky_relu)
def leaky_relu(a, negative_slope: float = 0.01, inplace: bool = False):
    return where(gt(a, 0), a, mul(a, negative_slope))


@torchsymbol(torch.nn.functional.softplus)
def softplus(a, beta: float = 1.0, threshold: float = 20.0):
    scaled = mul(a, beta)
    return where(gt(scaled, threshold), a, div(log1p(exp(scaled)), beta))


@torchsymbol(torch.nn.functional.mish)
def mish(a, inplace: bool = False):
    return mul(a, tanh(softplus(a)))


@torchsymbol(torch.nn.functional.hardtanh)
def hardtanh(a, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    return to_dtype(clamp(a, min_val, max_val), a.dtype)  # the bounds do not promote an int input


@torchsymbol(torch.nn.functional.elu)
def elu(a, alpha: float = 1.0, inplace: bool = False):
    return where(gt(a, 0), a, mul(expm1(a), alpha))


# symbols registered in loops above, bound to names so the decompositions read like code
exp, log, tanh, erf, sigmoid, trunc, log1p, expm1, sqrt, rsqrt, abs, neg, reciprocal = (
    ALL[n] for n in "exp log tanh erf sigmoid trunc log1p expm1 sqrt rsqrt abs neg reciprocal".split())
eq, ne, lt, le, gt, ge = (ALL[n] for n in "eq ne lt le gt ge".split())
isnan, isinf, isfinite = (ALL[n] for n in "isnan isinf isfinite".split())


# Python's unary operators on proxies
TENSOR_METHODS.update({"__neg__": neg, "__abs__": abs, "__invert__": ALL["bitwise_not"],
                       "__pos__": lambda a: a})


# -- more elementwise ops, written with the ones above ----------------------------------------------

def _floating(a):
    """``a`` in the dtype a float-only op computes in (ints become the default float)."""
    return a if _is_float(a.dtype) else to_dtype(a, torch.get_default_dtype())


@torchsymbol(torch.square, tensor_method("square"), methods=["square"])
def square(a):
    return pow(a, 2)


@torchsymbol(torch.positive, tensor_method("positive"), methods=["positive"])
def positive(a):
    if a.dtype == torch.bool:
        raise TypeError("The `+` operator, on a bool tensor is not supported.")
    return a


@torchsymbol(torch.clamp_min, tensor_method("clamp_min"), methods=["clamp_min"])
def clamp_min(a, min):
    return clamp(a, min=min)


@torchsymbol(torch.clamp_max, tensor_method("clamp_max"), methods=["clamp_max"])
def clamp_max(a, max):
    return clamp(a, max=max)


@torchsymbol(torch.deg2rad, tensor_method("deg2rad"), methods=["deg2rad"])
def deg2rad(a):
    return mul(_floating(a), math.pi / 180)


@torchsymbol(torch.rad2deg, tensor_method("rad2deg"), methods=["rad2deg"])
def rad2deg(a):
    return mul(_floating(a), 180 / math.pi)


@torchsymbol(torch.frac, tensor_method("frac"), methods=["frac"])
def frac(a):
    return sub(a, trunc(a))


@torchsymbol(torch.logaddexp, tensor_method("logaddexp"), methods=["logaddexp"])
def logaddexp(a, b):
    """max + log1p(exp(-|a - b|)); equal infinities give themselves (their difference is nan)."""
    m = maximum(a, b)
    same_inf = logical_and(isinf(a), eq(a, b))
    return where(same_inf, a, add(m, log1p(exp(neg(abs(sub(a, b)))))))


@torchsymbol(torch.logaddexp2, tensor_method("logaddexp2"), methods=["logaddexp2"])
def logaddexp2(a, b):
    m = maximum(a, b)
    same_inf = logical_and(isinf(a), eq(a, b))
    return where(same_inf, a, add(m, div(log1p(exp2(neg(abs(sub(a, b))))), math.log(2))))


@torchsymbol(torch.sinc, tensor_method("sinc"), methods=["sinc"])
def sinc(a):
    x = mul(_floating(a), math.pi)
    return where(eq(x, 0), 1.0, div(sin(x), x))


@torchsymbol(torch.copysign, tensor_method("copysign"), methods=["copysign"])
def copysign(a, b):
    return _binary(prims.copysign, a, b, float_only=True)


@torchsymbol(torch.fmax, tensor_method("fmax"), methods=["fmax"])
def fmax(a, b):
    """The larger, ignoring a nan operand; ties go to ``a`` (as eager's gradient does)."""
    dtype = result_dtype(a, b)
    a, b = broadcast(to_dtype(a, dtype), to_dtype(b, dtype))
    return where(logical_or(ge(a, b), isnan(b)), a, b)


@torchsymbol(torch.fmin, tensor_method("fmin"), methods=["fmin"])
def fmin(a, b):
    dtype = result_dtype(a, b)
    a, b = broadcast(to_dtype(a, dtype), to_dtype(b, dtype))
    return where(logical_or(le(a, b), isnan(b)), a, b)


@torchsymbol(torch.isposinf, tensor_method("isposinf"), methods=["isposinf"])
def isposinf(a):
    return logical_and(isinf(a), gt(a, 0))


@torchsymbol(torch.isneginf, tensor_method("isneginf"), methods=["isneginf"])
def isneginf(a):
    return logical_and(isinf(a), lt(a, 0))


@torchsymbol(torch.nan_to_num, tensor_method("nan_to_num"), methods=["nan_to_num"])
def nan_to_num(a, nan=0.0, posinf=None, neginf=None):
    if not a.dtype.is_floating_point:
        return a
    info = torch.finfo(a.dtype)
    a = where(isnan(a), 0.0 if nan is None else nan, a)
    a = where(logical_and(isinf(a), gt(a, 0)), info.max if posinf is None else posinf, a)
    return where(logical_and(isinf(a), lt(a, 0)), info.min if neginf is None else neginf, a)


@torchsymbol(torch.logit, tensor_method("logit"), methods=["logit"])
def logit(a, eps=None):
    x = _floating(a)
    if eps is not None:
        x = clamp(x, pyval(eps), 1 - pyval(eps))
    return log(div(x, sub(1, x)))


@torchsymbol(torch.float_power, tensor_method("float_power"), methods=["float_power"])
def float_power(a, b):
    dtype = torch.complex128 if any(isinstance(x, TensorProxy) and x.dtype.is_complex for x in (a, b)) \
        else torch.float64
    return pow(to_dtype(a, dtype), to_dtype(b, dtype))


@torchsymbol(torch.ldexp, tensor_method("ldexp"), methods=["ldexp"])
def ldexp(a, b):
    return mul(a, exp2(_floating(b) if isinstance(b, TensorProxy) else float(pyval(b))))


# activations
@torchsymbol(torch.nn.functional.relu6)
def relu6(a, inplace: bool = False):
    return hardtanh(a, 0.0, 6.0)


@torchsymbol(torch.nn.functional.hardsigmoid)
def hardsigmoid(a, inplace: bool = False):
    return div(hardtanh(add(a, 3.0), 0.0, 6.0), 6.0)


@torchsymbol(torch.nn.functional.hardswish)
def hardswish(a, inplace: bool = False):
    return mul(a, div(hardtanh(add(a, 3.0), 0.0, 6.0), 6.0))


@torchsymbol(torch.nn.functional.hardshrink, tensor_method("hardshrink"), methods=["hardshrink"])
def hardshrink(a, lambd: float = 0.5):
    return where(logical_and(ge(a, -lambd), le(a, lambd)), 0, a)


@torchsymbol(torch.nn.functional.softshrink)
def softshrink(a, lambd: float = 0.5):
    return where(gt(a, lambd), sub(a, lambd), where(lt(a, -lambd), add(a, lambd), 0))


@torchsymbol(torch.nn.functional.softsign)
def softsign(a):
    return div(a, add(abs(a), 1))


@torchsymbol(torch.nn.functional.tanhshrink)
def tanhshrink(a):
    return sub(a, tanh(a))


@torchsymbol(torch.nn.functional.threshold)
def threshold(a, threshold: float, value: float, inplace: bool = False):
    return where(le(a, threshold), value, a)


@torchsymbol(torch.nn.functional.logsigmoid)
def logsigmoid(a):
    return sub(minimum(a, 0), log1p(exp(neg(abs(a)))))


@torchsymbol(torch.nn.functional.selu, torch.selu)
def selu(a, inplace: bool = False):
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return mul(where(gt(a, 0), a, mul(expm1(a), alpha)), scale)


@torchsymbol(torch.nn.functional.celu, torch.celu)
def celu(a, alpha: float = 1.0, inplace: bool = False):
    return where(gt(a, 0), a, mul(expm1(div(a, alpha)), alpha))


exp2, sin = ALL["exp2"], ALL["sin"]
logical_and, logical_or = ALL["logical_and"], ALL["logical_or"]
