"""Vector-Jacobian product (VJP) rules: how the gradient flows back through one symbol.

A rule is registered for a symbol id (``"prims.mul"``, ``"ltorch.softmax"``) and called while the
backward trace is being recorded as ``rule(ctx, *args, **kwargs)`` with the bound symbol's arguments
(bound to the symbol's signature, so keyword and positional calls look alike). ``ctx.out`` is the
symbol's output and ``ctx.g`` the gradient of the loss with respect to it (same structure; an entry
is None where no gradient arrives). The rule returns one gradient per positional argument (None
for arguments that get none; a list for a list argument), written with torch-language and
primitive symbols, which the backward trace records. A slice's rule returns its gradient as
``accumulate.ZeroPadded`` (the piece and where it goes), so that pieces of one value are summed
side by side.

Every primitive with differentiable inputs has a rule. Torch-language symbols have a rule where
one fused rule beats differentiating their decomposition (fewer saved values, fewer ops, what
eager does): linear, matmul, softmax, log_softmax, cross_entropy (through its part
``cross_entropy_with_lse``), layer_norm, rms_norm, scaled_dot_product_attention, embedding, and a
few activations. A rule may decline a call (its
``when`` predicate is false, e.g. attention with dropout); the symbol is then differentiated
through its decomposition.
"""

from __future__ import annotations

import inspect
import math

import torch

from thunder import prims
from thunder.core.proxies import TensorProxy, pyval
from thunder.torch import ALL as L
from thunder.torch.opaque import opaque_call
from thunder.torch.promotion import computation_dtype, to_dtype
from thunder.transforms.autodiff.accumulate import ZeroPadded

RULES: dict[str, tuple] = {}  # symbol id -> (rule, when)


def vjp(*symbol_ids: str, when=None):
    """Registers the decorated function as the VJP rule of ``symbol_ids``."""

    def decorator(fn):
        for sid in symbol_ids:
            RULES[sid] = (fn, when)
        return fn

    return decorator


_SIGNATURES: dict[object, inspect.Signature | None] = {}


def bind(bsym) -> tuple[tuple, dict]:
    """The bound symbol's arguments as its symbol's signature binds them."""
    fn = bsym.sym.fn
    if fn not in _SIGNATURES:
        try:
            _SIGNATURES[fn] = inspect.signature(fn)
        except (TypeError, ValueError):
            _SIGNATURES[fn] = None
    sig = _SIGNATURES[fn]
    if sig is None:
        return bsym.args, bsym.kwargs
    bound = sig.bind(*bsym.args, **bsym.kwargs)
    bound.apply_defaults()
    return bound.args, bound.kwargs


def rule_for(bsym):
    """The rule that applies to ``bsym``, or None."""
    entry = RULES.get(bsym.sym.id)
    if entry is None:
        return None
    rule, when = entry
    if when is not None:
        args, kwargs = bind(bsym)
        if not when(*args, **kwargs):
            return None
    return rule


# -- helpers ---------------------------------------------------------------------------------------

add, sub, mul, div, neg = L["add"], L["sub"], L["mul"], L["div"], L["neg"]
exp, log, sqrt, where, sign = L["exp"], L["log"], L["sqrt"], L["where"], L["sign"]
eq, ne, gt, ge, lt, le = L["eq"], L["ne"], L["gt"], L["ge"], L["lt"], L["le"]
sum_, reshape, matmul, unsqueeze = L["sum"], L["reshape"], L["matmul"], L["unsqueeze"]


def _t(x) -> bool:
    return isinstance(x, TensorProxy)


def _conj(x):
    """The complex conjugate (gradients of complex functions are conjugated derivatives, PyTorch's
    convention); real values as they are."""
    if isinstance(x, complex):
        return x.conjugate()
    if isinstance(x, TensorProxy) and x.dtype.is_complex:
        from thunder.torch import dispatch

        return dispatch(torch.conj_physical, (x,), {})
    return x


def zeros(shape, like):
    return prims.full(tuple(shape), 0, like.dtype, like.device)


def transpose_last(x):
    return L["transpose"](x, -2, -1)


def sum_to_shape(x, shape):
    """Sums ``x`` down to ``shape`` (undoing broadcasting)."""
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return x
    lead = x.ndim - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1]
    if dims:
        x = sum_(x, dims, keepdim=True)
    return reshape(x, shape)


def restore_dims(x, shape, dims):
    """A reduction's gradient (shape without ``dims``) broadcast back to ``shape``."""
    kept = [1 if i in dims else s for i, s in enumerate(shape)]
    return L["expand"](reshape(x, kept), list(shape))


def like(grad, a):
    """``grad`` in ``a``'s dtype (a rule computed in a wider type)."""
    return to_dtype(grad, a.dtype) if grad is not None else None


# -- elementwise primitives ------------------------------------------------------------------------

def _unary(formula):
    """A rule for a unary prim whose derivative is ``formula(a, out)``."""
    def rule(ctx, a):
        return (mul(ctx.g, _conj(formula(a, ctx.out))),)
    return rule


_UNARY = {
    "neg": lambda a, o: -1.0,
    "exp": lambda a, o: o,
    "exp2": lambda a, o: mul(o, math.log(2.0)),
    "expm1": lambda a, o: add(o, 1.0),
    "log": lambda a, o: L["reciprocal"](a),
    "log1p": lambda a, o: L["reciprocal"](add(a, 1.0)),
    "log2": lambda a, o: L["reciprocal"](mul(a, math.log(2.0))),
    "log10": lambda a, o: L["reciprocal"](mul(a, math.log(10.0))),
    "sqrt": lambda a, o: div(0.5, o),
    "rsqrt": lambda a, o: mul(-0.5, mul(o, mul(o, o))),
    "sin": lambda a, o: L["cos"](a),
    "cos": lambda a, o: neg(L["sin"](a)),
    "tan": lambda a, o: add(1.0, mul(o, o)),
    "asin": lambda a, o: L["rsqrt"](sub(1.0, mul(a, a))),
    "acos": lambda a, o: neg(L["rsqrt"](sub(1.0, mul(a, a)))),
    "atan": lambda a, o: L["reciprocal"](add(1.0, mul(a, a))),
    "sinh": lambda a, o: L["cosh"](a),
    "cosh": lambda a, o: L["sinh"](a),
    "tanh": lambda a, o: sub(1.0, mul(o, o)),
    "asinh": lambda a, o: L["rsqrt"](add(mul(a, a), 1.0)),
    "acosh": lambda a, o: L["rsqrt"](sub(mul(a, a), 1.0)),
    "atanh": lambda a, o: L["reciprocal"](sub(1.0, mul(a, a))),
    "erf": lambda a, o: mul(2.0 / math.sqrt(math.pi), exp(neg(mul(a, a)))),
    "erfc": lambda a, o: mul(-2.0 / math.sqrt(math.pi), exp(neg(mul(a, a)))),
    "erfinv": lambda a, o: mul(math.sqrt(math.pi) / 2.0, exp(mul(o, o))),
    "lgamma": lambda a, o: L["digamma"](a),
    "reciprocal": lambda a, o: neg(mul(o, o)),
    "sigmoid": lambda a, o: mul(o, sub(1.0, o)),
    "abs": lambda a, o: _conj(where(eq(a, 0), 0.0, div(a, o))) if a.dtype.is_complex else sign(a),
    "real": lambda a, o: 1.0,
}
for _name, _formula in _UNARY.items():
    vjp(f"prims.{_name}")(_unary(_formula))


@vjp("prims.digamma")
def _digamma(ctx, a):
    return (mul(ctx.g, prims.polygamma(1, a)),)


@vjp("prims.polygamma")
def _polygamma(ctx, n, a):
    return None, mul(ctx.g, prims.polygamma(pyval(n) + 1, a))


@vjp("prims.copysign")
def _copysign(ctx, a, b):
    """out / a (the sign flip), 0 where a is 0, as eager; nothing flows to b."""
    ratio = where(eq(a, 0), 0.0, div(ctx.out, a))
    return (mul(ctx.g, ratio) if _t(a) else None), (zeros(b.shape, ctx.g) if _t(b) else None)


@vjp("prims.floor_divide")
def _floor_divide(ctx, a, b):
    """Piecewise constant: zero almost everywhere (eager gives zeros too)."""
    return (zeros(a.shape, ctx.g) if _t(a) else None), (zeros(b.shape, ctx.g) if _t(b) else None)


@vjp("prims.bernoulli_like")
def _bernoulli_like(ctx, a, p):
    return None, None  # ``a`` gives the mask its layout, not its values


@vjp("prims.sign", "prims.floor", "prims.ceil", "prims.round", "prims.trunc")
def _zero_grad(ctx, a):
    return (zeros(a.shape, a),)


@vjp("prims.add")
def _add(ctx, a, b):
    return ctx.g, ctx.g


@vjp("prims.sub")
def _sub(ctx, a, b):
    return ctx.g, (neg(ctx.g) if _t(b) else None)


@vjp("prims.mul")
def _mul(ctx, a, b):
    return (mul(ctx.g, _conj(b)) if _t(a) else None), (mul(ctx.g, _conj(a)) if _t(b) else None)


@vjp("prims.div")
def _div(ctx, a, b):
    ga = div(ctx.g, _conj(b)) if _t(a) else None
    gb = neg(mul(ctx.g, _conj(div(ctx.out, b)))) if _t(b) else None
    return ga, gb


@vjp("prims.pow")
def _pow(ctx, a, b):
    b_minus_1 = sub(b, 1) if _t(b) else pyval(b) - 1
    ga = mul(ctx.g, mul(b, L["pow"](a, b_minus_1))) if _t(a) else None
    # d/db a**b = a**b log a, taken as 0 where a == 0 (as eager does)
    gb = mul(ctx.g, where(eq(a, 0), 0.0, mul(ctx.out, log(a)))) if _t(b) else None
    return ga, gb


def _select_rule(pick_a):
    """maximum/minimum: the gradient goes to the chosen operand, split evenly on ties (as eager)."""
    def rule(ctx, a, b):
        half = mul(ctx.g, 0.5)
        chosen_a = pick_a(a, b)
        ga = where(eq(a, b), half, where(chosen_a, ctx.g, 0.0)) if _t(a) else None
        gb = where(eq(a, b), half, where(chosen_a, 0.0, ctx.g)) if _t(b) else None
        return ga, gb
    return rule


vjp("prims.maximum")(_select_rule(gt))
vjp("prims.minimum")(_select_rule(lt))


@vjp("prims.remainder")
def _remainder(ctx, a, b):
    return ctx.g, (neg(mul(ctx.g, L["floor_divide"](a, b))) if _t(b) else None)


@vjp("prims.fmod")
def _fmod(ctx, a, b):
    return ctx.g, (neg(mul(ctx.g, L["trunc"](div(a, b)))) if _t(b) else None)


@vjp("prims.atan2")
def _atan2(ctx, a, b):
    denom = add(mul(a, a), mul(b, b))
    return (mul(ctx.g, div(b, denom)) if _t(a) else None), (neg(mul(ctx.g, div(a, denom))) if _t(b) else None)


@vjp("prims.where")
def _where(ctx, pred, a, b):
    return None, (where(pred, ctx.g, 0.0) if _t(a) else None), (where(pred, 0.0, ctx.g) if _t(b) else None)


@vjp("prims.convert_element_type")
def _convert(ctx, a, dtype):
    return (to_dtype(ctx.g, a.dtype),)


@vjp("prims.device_put")
def _device_put(ctx, a, device):
    return (prims.device_put(ctx.g, a.device),)


# -- shape primitives ------------------------------------------------------------------------------

@vjp("prims.broadcast_in_dim")
def _broadcast_in_dim(ctx, a, shape, broadcast_dimensions):
    g = ctx.g
    summed = [d for d in range(len(shape)) if d not in broadcast_dimensions and shape[d] != 1]
    summed += [d for d, s in zip(broadcast_dimensions, a.shape) if s == 1 and shape[d] != 1]
    if summed:
        g = sum_(g, sorted(summed), keepdim=True)
    return (reshape(g, a.shape),)


@vjp("prims.reshape", "prims.squeeze")
def _reshape(ctx, a, shape):
    return (reshape(ctx.g, a.shape),)


@vjp("prims.transpose")
def _transpose(ctx, a, permutation):
    inverse = [0] * len(permutation)
    for i, p in enumerate(permutation):
        inverse[p] = i
    return (L["permute"](ctx.g, inverse),)


@vjp("prims.slice")
def _slice(ctx, a, start_indices, end_indices, strides=None):
    g = ctx.g
    strides = strides or [1] * a.ndim
    for d, step in enumerate(strides):
        if step > 1:  # put the values back step apart: interleave zeros, then trim
            n = g.shape[d]
            filler = zeros(list(g.shape[:d + 1]) + [step - 1] + list(g.shape[d + 1:]), g)
            g = L["cat"]([unsqueeze(g, d + 1), filler], d + 1)
            g = reshape(g, list(g.shape[:d]) + [n * step] + list(g.shape[d + 2:]))
            span = end_indices[d] - start_indices[d]
            g = prims.pad(g, 0.0, tuple((0, span - n * step) if i == d else (0, 0) for i in range(g.ndim)))
    config = tuple((s, a.shape[d] - s - g.shape[d]) for d, s in enumerate(start_indices))
    return (ZeroPadded(g, config),)


@vjp("prims.pad")
def _pad(ctx, a, padding_value, padding_config):
    return prims.pad(ctx.g, 0.0, tuple((-lo, -hi) for lo, hi in padding_config)), None


@vjp("prims.cat")
def _cat(ctx, tensors, dim):
    grads, start = [], 0
    for t in tensors:
        grads.append(L["narrow"](ctx.g, dim, start, t.shape[dim]))
        start += t.shape[dim]
    return grads, None


@vjp("prims.flip")
def _flip(ctx, a, dims):
    return (prims.flip(ctx.g, dims),)


@vjp("prims.take")
def _take(ctx, a, index, dim):
    return prims.index_add(zeros(a.shape, ctx.g), index, ctx.g, dim), None


@vjp("prims.take_along_axis")
def _take_along_axis(ctx, a, index, dim):
    return prims.scatter_add(zeros(a.shape, ctx.g), index, ctx.g, dim), None


@vjp("prims.scatter_add")
def _scatter_add(ctx, a, index, value, dim):
    return ctx.g, None, (prims.take_along_axis(ctx.g, index, dim) if _t(value) else None)


@vjp("prims.index_add")
def _index_add(ctx, a, index, value, dim):
    return ctx.g, None, (prims.take(ctx.g, index, dim) if _t(value) else None)


# -- reductions ------------------------------------------------------------------------------------

@vjp("prims.sum")
def _sum(ctx, a, dims):
    return (restore_dims(ctx.g, a.shape, dims),)


@vjp("prims.prod")
def _prod(ctx, a, dims):
    # out / a: exact unless an element is 0 (eager handles zeros separately)
    return (mul(restore_dims(ctx.g, a.shape, dims), div(restore_dims(ctx.out, a.shape, dims), a)),)


def _extremum(ctx, a, dims):
    """amax/amin: the gradient is shared evenly by the elements equal to the result (as eager)."""
    hit = to_dtype(eq(a, restore_dims(ctx.out, a.shape, dims)), ctx.g.dtype)
    count = restore_dims(prims.sum(hit, dims), a.shape, dims)
    return (div(mul(restore_dims(ctx.g, a.shape, dims), hit), count),)


vjp("prims.amax", "prims.amin")(_extremum)


@vjp("prims.var")
def _var(ctx, a, dims, correction):
    n = math.prod(a.shape[d] for d in dims)
    mean = div(restore_dims(prims.sum(a, dims), a.shape, dims), n)
    scale = 2.0 / max(n - pyval(correction), 0)
    return mul(mul(restore_dims(ctx.g, a.shape, dims), sub(a, mean)), scale), None


# -- linear algebra --------------------------------------------------------------------------------

def _matmul_grads(g, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return mul(g, b), mul(g, a)
    if a.ndim == 1:
        ga = L["squeeze"](matmul(b, unsqueeze(g, -1)), -1)
        gb = mul(unsqueeze(a, -1), unsqueeze(g, -2))
    elif b.ndim == 1:
        ga = mul(unsqueeze(g, -1), b)
        gb = L["squeeze"](matmul(transpose_last(a), unsqueeze(g, -1)), -1)
    else:
        ga = matmul(g, transpose_last(b))
        gb = matmul(transpose_last(a), g)
    return sum_to_shape(ga, a.shape), sum_to_shape(gb, b.shape)


@vjp("prims.matmul", "ltorch.matmul")
def _matmul(ctx, a, b):
    return _matmul_grads(ctx.g, a, b)


@vjp("prims.linear", "ltorch.linear")
def _linear(ctx, input, weight, bias=None):
    g = ctx.g
    w = weight if weight.ndim == 2 else unsqueeze(weight, 0)
    g2 = g if weight.ndim == 2 else unsqueeze(g, -1)
    g_input = matmul(g2, w)
    g_flat = reshape(g2, [-1, w.shape[0]])
    g_weight = matmul(transpose_last(g_flat), reshape(input, [-1, w.shape[1]]))
    g_weight = g_weight if weight.ndim == 2 else reshape(g_weight, weight.shape)
    g_bias = sum_to_shape(g, bias.shape) if _t(bias) else None
    return g_input, g_weight, g_bias


# -- torch-language rules --------------------------------------------------------------------------

@vjp("ltorch.relu")
def _relu(ctx, a, inplace=False):
    return (where(gt(ctx.out, 0), ctx.g, 0.0),)


@vjp("ltorch.silu")
def _silu(ctx, a, inplace=False):
    x = to_dtype(a, computation_dtype(a.dtype))
    s = L["sigmoid"](x)
    return (like(mul(ctx.g, mul(s, add(1.0, mul(x, sub(1.0, s))))), a),)


@vjp("ltorch.gelu", when=lambda a, approximate="none": approximate == "none")
def _gelu(ctx, a, approximate="none"):
    x = to_dtype(a, computation_dtype(a.dtype))
    cdf = mul(0.5, add(1.0, L["erf"](mul(x, 1 / math.sqrt(2)))))
    pdf = mul(1 / math.sqrt(2 * math.pi), exp(mul(-0.5, mul(x, x))))
    return (like(mul(ctx.g, add(cdf, mul(x, pdf))), a),)


def _no_dtype(a, dim, dtype=None):
    return dtype is None


@vjp("ltorch.softmax", when=_no_dtype)
def _softmax(ctx, a, dim, dtype=None):
    out = to_dtype(ctx.out, computation_dtype(a.dtype))
    g = to_dtype(ctx.g, out.dtype)
    return like(mul(out, sub(g, sum_(mul(g, out), dim, keepdim=True))), a), None, None


@vjp("ltorch.log_softmax", when=_no_dtype)
def _log_softmax(ctx, a, dim, dtype=None):
    out = to_dtype(ctx.out, computation_dtype(a.dtype))
    g = to_dtype(ctx.g, out.dtype)
    return like(sub(g, mul(exp(out), sum_(g, dim, keepdim=True))), a), None, None


@vjp("ltorch.cross_entropy_with_lse")
def _cross_entropy_with_lse(ctx, input, target, ignore_index=-100, reduction="mean"):
    """(softmax(input) - onehot(target)) * g over the valid targets, the probabilities computed
    from the forward's log-sum-exp (saved: one value per position) rather than reduced again.
    The lse output is internal to ``cross_entropy`` and receives no gradient."""
    g = ctx.g[0]
    if g is None:
        return None, None, None, None
    class_dim = 1 if input.ndim > 1 else 0
    x = to_dtype(input, computation_dtype(input.dtype))
    probs = exp(sub(x, ctx.out[1]))
    classes = prims.iota(input.shape[class_dim], 0, 1, target.dtype, input.device)
    classes = reshape(classes, [input.shape[class_dim] if d == class_dim else 1 for d in range(input.ndim)])
    onehot = to_dtype(eq(unsqueeze(target, class_dim), classes), x.dtype)
    valid = to_dtype(ne(target, pyval(ignore_index)), x.dtype)
    g = to_dtype(g, x.dtype)
    scale = mul(valid, div(g, sum_(valid)) if reduction == "mean" else g)
    return like(mul(sub(probs, onehot), unsqueeze(scale, class_dim)), input), None, None, None


def _norm_dims(a, normalized_shape):
    return list(range(a.ndim - len(normalized_shape), a.ndim))


def _batch_sum(x, param):
    """Sums a per-element gradient over the batch dims down to a normalization parameter."""
    return sum_to_shape(x, param.shape)


@vjp("ltorch.layer_norm")
def _layer_norm(ctx, input, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = _norm_dims(input, normalized_shape)
    x = to_dtype(input, computation_dtype(input.dtype))
    mu = L["mean"](x, dims, keepdim=True)
    centered = sub(x, mu)
    rstd = L["rsqrt"](add(L["mean"](mul(centered, centered), dims, keepdim=True), pyval(eps)))
    xhat = mul(centered, rstd)
    g = to_dtype(ctx.g, x.dtype)
    gy = mul(g, to_dtype(weight, x.dtype)) if _t(weight) else g
    g_input = mul(rstd, sub(sub(gy, L["mean"](gy, dims, keepdim=True)),
                            mul(xhat, L["mean"](mul(gy, xhat), dims, keepdim=True))))
    g_weight = like(_batch_sum(mul(g, xhat), weight), weight) if _t(weight) else None
    g_bias = like(_batch_sum(g, bias), bias) if _t(bias) else None
    return like(g_input, input), None, g_weight, g_bias, None


@vjp("ltorch.rms_norm")
def _rms_norm(ctx, input, normalized_shape, weight=None, eps=None):
    dims = _norm_dims(input, normalized_shape)
    x = to_dtype(input, computation_dtype(input.dtype))
    eps = torch.finfo(input.dtype).eps if eps is None else pyval(eps)
    rrms = L["rsqrt"](add(L["mean"](mul(x, x), dims, keepdim=True), eps))
    xhat = mul(x, rrms)
    g = to_dtype(ctx.g, x.dtype)
    gy = mul(g, to_dtype(weight, x.dtype)) if _t(weight) else g
    g_input = mul(rrms, sub(gy, mul(xhat, L["mean"](mul(gy, xhat), dims, keepdim=True))))
    g_weight = like(_batch_sum(mul(g, xhat), weight), weight) if _t(weight) else None
    return like(g_input, input), None, g_weight, None


def _plain_embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                     scale_grad_by_freq=False, sparse=False):
    return max_norm is None and not scale_grad_by_freq and not sparse


@vjp("ltorch.embedding", when=_plain_embedding)
def _embedding(ctx, input, weight, padding_idx=None, *rest):
    padding = -1 if padding_idx is None else pyval(padding_idx) % weight.shape[0]
    return None, L["embedding_dense_backward"](ctx.g, input, weight.shape[0], padding, False)


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                     enable_gqa=False):
    return not pyval(dropout_p) and key.shape[:-2] == query.shape[:-2] and value.shape[:-2] == query.shape[:-2] \
        and not (_t(attn_mask) and attn_mask.requires_grad)


@vjp("ltorch.scaled_dot_product_attention", when=_fused_attention)
def _sdpa(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Recomputes the attention probabilities from q, k, v (as flash attention does) instead of
    saving the L x S matrix."""
    cdt = computation_dtype(query.dtype)
    q, k, v = (to_dtype(t, cdt) for t in (query, key, value))
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else pyval(scale)
    scores = mul(matmul(q, transpose_last(k)), scale)
    L_, S = query.shape[-2], key.shape[-2]
    if is_causal:
        causal = L["tril"](prims.full((L_, S), True, torch.bool, query.device))
        scores = where(causal, scores, float("-inf"))
    if _t(attn_mask):
        scores = where(attn_mask, scores, float("-inf")) if attn_mask.dtype == torch.bool \
            else add(scores, attn_mask)
    probs = L["softmax"](scores, -1)
    g = to_dtype(ctx.g, cdt)
    g_value = matmul(transpose_last(probs), g)
    g_probs = matmul(g, transpose_last(v))
    g_scores = mul(probs, sub(g_probs, sum_(mul(g_probs, probs), -1, keepdim=True)))
    g_query = mul(matmul(g_scores, k), scale)
    g_key = mul(matmul(transpose_last(g_scores), q), scale)
    return like(g_query, query), like(g_key, key), like(g_value, value)


# -- convolution -----------------------------------------------------------------------------------

def _plain_convolution(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Batched convolutions with explicit padding (``padding="same"`` may pad unevenly: torch's
    autograd differentiates those)."""
    return not isinstance(pyval(padding), str) and input.ndim == weight.ndim


@vjp("opaque.conv1d", "opaque.conv2d", "opaque.conv3d", when=_plain_convolution)
def _convolution(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch's convolution backward, the kernel eager autograd runs, as one operation: the forward
    stays a plain convolution that a fusion region holds with its neighbours (an opaque operation
    would run through torch's autograd, outside any region)."""
    n = weight.ndim - 2

    def per_dim(v):
        v = pyval(v)
        return [pyval(x) for x in v] if isinstance(v, (tuple, list)) else [v] * n

    mask = [input.requires_grad, weight.requires_grad, _t(bias) and bias.requires_grad]
    bias_sizes = [weight.shape[0]] if _t(bias) else None
    args = (ctx.g, input, weight, bias_sizes, per_dim(stride), per_dim(padding), per_dim(dilation), False,
            [0] * n, pyval(groups), mask)
    return opaque_call(torch.ops.aten.convolution_backward.default, args, {})
