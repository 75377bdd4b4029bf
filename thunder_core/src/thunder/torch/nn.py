"""Neural-network ops: linear algebra, normalization, softmax, embedding, dropout, attention, losses."""

from __future__ import annotations

import builtins
import math

import torch
import torch.nn.functional as F

from thunder import prims
from thunder.core.errors import DataDependentError
from thunder.core.proxies import TensorProxy, pyval
from thunder.torch.creation import ones, ones_like
from thunder.torch.elementwise import (
    abs,
    add,
    clamp,
    div,
    eq,
    exp,
    gt,
    log,
    log1p,
    lt,
    minimum,
    mul,
    ne,
    neg,
    rsqrt,
    sigmoid,
    sqrt,
    sub,
    where,
)
from thunder.torch.opaque import opaque_call, opaque_with_meta
from thunder.torch.promotion import broadcast_shapes, broadcast_to, computation_dtype, result_dtype, to_dtype
from thunder.torch.reduction import amax, mean, sum, var
from thunder.torch.registry import adapts, tensor_method, torchsymbol
from thunder.torch.shape import canonical_dim, diagonal, expand, narrow, reshape, squeeze, transpose, tril, unsqueeze

# -- linear algebra ---------------------------------------------------------------------------


def _same_dtype(name, a, b):
    if a.dtype != b.dtype:
        raise TypeError(f"{name}: expected both operands to have the same dtype, but got "
                        f"{a.dtype} and {b.dtype}")


@torchsymbol(torch.matmul, tensor_method("matmul"), methods=["matmul", "__matmul__"])
def matmul(a, b):
    _same_dtype("matmul", a, b)
    return prims.matmul(a, b)


@torchsymbol(methods=["__rmatmul__"])
def rmatmul(a, b):
    return matmul(b, a)


@torchsymbol(torch.bmm, tensor_method("bmm"), methods=["bmm"])
def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise prims.InvalidArgumentError(f"bmm: expected 3-D tensors, got {a.ndim}-D and {b.ndim}-D")
    return matmul(a, b)


@torchsymbol(torch.mm, tensor_method("mm"), methods=["mm"])
def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise prims.InvalidArgumentError(f"mm: expected 2-D tensors, got {a.ndim}-D and {b.ndim}-D")
    return matmul(a, b)


@torchsymbol(torch.baddbmm, tensor_method("baddbmm"), methods=["baddbmm"])
def baddbmm(a, b1, b2, *, beta=1, alpha=1):
    return _scaled_sum(a, bmm(b1, b2), beta, alpha)


@torchsymbol(torch.addmm, tensor_method("addmm"), methods=["addmm"])
def addmm(a, m1, m2, *, beta=1, alpha=1):
    return _scaled_sum(a, mm(m1, m2), beta, alpha)


@torchsymbol(torch.cov, tensor_method("cov"), methods=["cov"])
def cov(input, *, correction: int = 1, fweights=None, aweights=None):
    """As ATen computes it; its checks that fweights are non-negative integers read values and
    are left out."""
    if input.ndim > 2:
        raise prims.InvalidArgumentError(f"cov(): expected input to have two or fewer dimensions but got an input with "
                                         f"{input.ndim} dimensions")
    x = input if input.ndim == 2 else reshape(input, [1, -1])
    n = x.shape[1]
    w = fweights
    if aweights is not None:
        w = aweights if w is None else mul(w, aweights)
    if w is None:
        w_sum = n
        avg = div(sum(x, 1), n)
        norm = builtins.max(n - pyval(correction), 0)
    else:
        w_sum = sum(w)
        avg = div(sum(mul(x, w), 1), w_sum)
        if pyval(correction) != 0 and aweights is not None:
            norm = sub(w_sum, div(mul(sum(mul(w, aweights)), correction), w_sum))
        else:
            norm = sub(w_sum, correction)
        norm = where(prims.le(norm, 0), 0, norm)
    centered = sub(x, unsqueeze(avg, 1))
    weighted = centered if w is None else mul(centered, w)
    c = matmul(centered, transpose(weighted, 0, 1))
    return squeeze(div(c, norm))


@torchsymbol(torch.corrcoef, tensor_method("corrcoef"), methods=["corrcoef"])
def corrcoef(input):
    c = cov(input)
    if c.ndim == 0:
        return div(c, c)
    stddev = sqrt(diagonal(c))
    c = div(div(c, reshape(stddev, [-1, 1])), reshape(stddev, [1, -1]))
    return clamp(c, -1, 1)


@torchsymbol(F.linear)
def linear(input, weight, bias=None):
    _same_dtype("linear", input, weight)
    return prims.linear(input, weight, bias)


# -- normalization ----------------------------------------------------------------------------


def _normalized_dims(a, normalized_shape) -> tuple:
    n = len(normalized_shape)
    if tuple(a.shape[a.ndim - n:]) != tuple(pyval(s) for s in normalized_shape):
        raise prims.InvalidArgumentError(f"expected input with shape [*, {', '.join(map(str, normalized_shape))}], "
                                         f"but got input of size {list(a.shape)}")
    return tuple(range(a.ndim - n, a.ndim))


@torchsymbol(F.layer_norm)
def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    dims = _normalized_dims(input, normalized_shape)
    x = to_dtype(input, computation_dtype(input.dtype))
    mu = mean(x, dims, keepdim=True)
    centered = sub(x, mu)
    rstd = rsqrt(add(var(x, dims, keepdim=True, correction=0), eps))
    out = mul(centered, rstd)
    if weight is not None:
        out = mul(out, weight)
    if bias is not None:
        out = add(out, bias)
    return to_dtype(out, input.dtype)


if hasattr(F, "rms_norm"):
    @torchsymbol(F.rms_norm)
    def rms_norm(input, normalized_shape, weight=None, eps=None):
        dims = _normalized_dims(input, normalized_shape)
        x = to_dtype(input, computation_dtype(input.dtype))
        eps = torch.finfo(input.dtype).eps if eps is None else eps
        out = mul(x, rsqrt(add(mean(mul(x, x), dims, keepdim=True), eps)))
        if weight is not None:
            out = mul(out, weight)
        return to_dtype(out, input.dtype)


@torchsymbol(F.group_norm)
def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    n, c = input.shape[0], input.shape[1]
    x = reshape(to_dtype(input, computation_dtype(input.dtype)), [n, num_groups, -1])
    mu = mean(x, 2, keepdim=True)
    out = mul(sub(x, mu), rsqrt(add(var(x, 2, keepdim=True, correction=0), eps)))
    out = reshape(out, input.shape)
    param_shape = [1, c] + [1] * (input.ndim - 2)
    if weight is not None:
        out = mul(out, reshape(weight, param_shape))
    if bias is not None:
        out = add(out, reshape(bias, param_shape))
    return to_dtype(out, input.dtype)


# -- softmax ----------------------------------------------------------------------------------


@torchsymbol(torch.softmax, tensor_method("softmax"), methods=["softmax"])
def softmax(a, dim, dtype=None):
    out_dtype = dtype or a.dtype
    x = to_dtype(a, computation_dtype(out_dtype))
    dim = canonical_dim(dim, a.ndim)
    if a.ndim and a.shape[dim] == 0:
        return to_dtype(x, out_dtype)
    shifted = exp(sub(x, amax(x, dim, keepdim=True)))
    return to_dtype(div(shifted, sum(shifted, dim, keepdim=True)), out_dtype)


@torchsymbol(torch.log_softmax, tensor_method("log_softmax"), methods=["log_softmax"])
def log_softmax(a, dim, dtype=None):
    out_dtype = dtype or a.dtype
    x = to_dtype(a, computation_dtype(out_dtype))
    dim = canonical_dim(dim, a.ndim)
    if a.ndim and a.shape[dim] == 0:
        return to_dtype(x, out_dtype)
    _, shifted, log_total = _log_softmax_parts(x, dim)
    return to_dtype(sub(shifted, log_total), out_dtype)


def _log_softmax_parts(x, dim):
    """``(max, x - max, log(sum(exp(x - max))))`` along ``dim``: log_softmax is the second less
    the third, the log-sum-exp the first plus the third."""
    row_max = amax(x, dim, keepdim=True)
    shifted = sub(x, row_max)
    return row_max, shifted, log(sum(exp(shifted), dim, keepdim=True))


def _implicit_softmax_dim(ndim: int) -> int:
    return 0 if ndim in (0, 1, 3) else 1


@adapts(F.softmax)
def softmax_functional(input, dim=None, _stacklevel=3, dtype=None):
    return softmax(input, _implicit_softmax_dim(input.ndim) if dim is None else dim, dtype)


@adapts(F.log_softmax)
def log_softmax_functional(input, dim=None, _stacklevel=3, dtype=None):
    return log_softmax(input, _implicit_softmax_dim(input.ndim) if dim is None else dim, dtype)


# -- embedding and dropout --------------------------------------------------------------------


@torchsymbol(F.embedding)
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    if max_norm is not None:
        raise NotImplementedError("embedding with max_norm renormalizes the weight in place")
    flat = reshape(input, -1)
    rows = prims.take(weight, flat, 0)
    return reshape(rows, list(input.shape) + [weight.shape[1]])


@torchsymbol(torch.ops.aten.embedding_dense_backward.default, tags=("outside_fusion",))
def embedding_dense_backward(grad_output, indices, num_weights: int, padding_idx: int, scale_grad_by_freq: bool):
    """The weight gradient of ``embedding``: each row of ``grad_output`` added into the row its index
    names, accumulated in float32 as eager does (a low-precision accumulation would round at every
    repeated token); row ``padding_idx`` gets none. Tagged ``outside_fusion``: eager's kernel touches
    only the indexed rows, where a fusion compiler's lowering writes the float32 table twice."""
    if pyval(scale_grad_by_freq):
        raise NotImplementedError("embedding gradient with scale_grad_by_freq")
    width = grad_output.shape[-1]
    flat = reshape(indices, -1)
    g = to_dtype(reshape(grad_output, [-1, width]), torch.float32)
    padding_idx = pyval(padding_idx)
    if padding_idx >= 0:
        g = where(unsqueeze(ne(flat, padding_idx), -1), g, 0.0)
    table = prims.full((pyval(num_weights), width), 0, torch.float32, grad_output.device)
    return to_dtype(prims.index_add(table, flat, g, 0), grad_output.dtype)


@torchsymbol(F.dropout)
def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    p = pyval(p)
    if not training or p == 0:
        return input
    if p == 1:
        return mul(input, 0)
    # as eager on CPU: a Bernoulli(1 - p) mask laid out like the input, scaled by 1 / (1 - p)
    keep = prims.bernoulli_like(input, 1.0 - p)
    return mul(input, div(keep, 1.0 - p))


# -- attention --------------------------------------------------------------------------------


@torchsymbol(F.scaled_dot_product_attention)
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else pyval(scale)
    if enable_gqa and key.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key = _repeat_heads(key, groups)
        value = _repeat_heads(value, groups)
    x = to_dtype(query, computation_dtype(query.dtype))
    scores = mul(prims.matmul(x, transpose(to_dtype(key, x.dtype), -2, -1)), scale)
    if is_causal:
        causal = tril(ones(L, S, dtype=torch.bool, device=query.device))
        scores = where(causal, scores, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = where(attn_mask, scores, float("-inf"))
        else:
            scores = add(scores, attn_mask)
    weights = softmax(scores, -1)
    if pyval(dropout_p) > 0:
        weights = dropout(weights, dropout_p)
    return to_dtype(prims.matmul(weights, to_dtype(value, weights.dtype)), query.dtype)


def _repeat_heads(t, groups: int):
    """(..., H, S, D) -> (..., H * groups, S, D), each head repeated ``groups`` times."""
    shape = list(t.shape)
    t = unsqueeze(t, -3)
    t = expand(t, shape[:-2] + [groups] + shape[-2:])
    return reshape(t, shape[:-3] + [shape[-3] * groups] + shape[-2:])


# -- losses -----------------------------------------------------------------------------------


def _reduce_loss(loss, reduction: str, weight_sum=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return sum(loss)
    if reduction == "mean":
        return div(sum(loss), weight_sum) if weight_sum is not None else mean(loss)
    raise prims.InvalidArgumentError(f"{reduction} is not a valid value for reduction")


@torchsymbol(F.nll_loss)
def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    class_dim = 1 if input.ndim > 1 else 0
    valid = ne(target, ignore_index)
    safe_target = where(valid, target, 0)
    picked = prims.take_along_axis(input, unsqueeze(safe_target, class_dim), class_dim)
    picked = reshape(picked, target.shape)
    w = to_dtype(valid, input.dtype)
    if weight is not None:
        w = mul(w, reshape(prims.take(weight, reshape(safe_target, -1), 0), target.shape))
    loss = neg(mul(picked, w))
    return _reduce_loss(loss, reduction, sum(w) if reduction == "mean" else None)


@torchsymbol(F.cross_entropy)
def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    class_dim = 1 if input.ndim > 1 else 0
    if weight is None and not pyval(label_smoothing) and not target.dtype.is_floating_point \
            and input.shape[class_dim] > 0:
        return cross_entropy_with_lse(input, target, ignore_index, reduction)[0]
    logp = log_softmax(input, class_dim)
    if target.dtype.is_floating_point:  # class probabilities
        if label_smoothing:
            n = input.shape[class_dim]
            target = add(mul(target, 1 - label_smoothing), label_smoothing / n)
        per_class = mul(logp, target)
        if weight is not None:
            per_class = mul(per_class, reshape(weight, [-1] + [1] * (input.ndim - class_dim - 1)))
        return _reduce_loss(neg(sum(per_class, class_dim)), reduction,
                            input.shape[0] if reduction == "mean" and input.ndim > 1 else None)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if not label_smoothing:
        return nll
    n = input.shape[class_dim]
    valid = to_dtype(ne(target, ignore_index), input.dtype)
    smooth_terms = logp if weight is None else mul(logp, reshape(weight, [-1] + [1] * (input.ndim - class_dim - 1)))
    smooth = mul(neg(sum(smooth_terms, class_dim)), valid)
    if reduction == "mean":
        denom = sum(valid) if weight is None else sum(mul(valid, reshape(
            prims.take(weight, reshape(where(ne(target, ignore_index), target, 0), -1), 0), target.shape)))
        smooth = div(sum(smooth), denom)
    else:
        smooth = _reduce_loss(smooth, reduction)
    return add(mul(nll, 1 - label_smoothing), mul(smooth, label_smoothing / n))


@torchsymbol(name="cross_entropy_with_lse")
def cross_entropy_with_lse(input, target, ignore_index: int = -100, reduction: str = "mean"):
    """Cross-entropy with class-index targets (no weights, no smoothing), and the log-sum-exp of
    each position's classes. Not a torch function: ``cross_entropy`` returns only the loss, and
    the lse is for the backward, which computes the probabilities as ``exp(x - lse)`` in one
    pass over the logits instead of reducing them again (a 128k-class vocabulary's logits are
    the largest tensor of a language model's step)."""
    class_dim = 1 if input.ndim > 1 else 0
    row_max, shifted, log_total = _log_softmax_parts(to_dtype(input, computation_dtype(input.dtype)), class_dim)
    logp = to_dtype(sub(shifted, log_total), input.dtype)
    return nll_loss(logp, target, ignore_index=ignore_index, reduction=reduction), add(row_max, log_total)


@torchsymbol(F.mse_loss)
def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    diff = sub(input, target)
    return _reduce_loss(mul(diff, diff), reduction)



@opaque_with_meta(F.ctc_loss)
def _ctc_loss_meta(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
                   zero_infinity=False):
    """One loss per batch element, or their reduction; the alignment sizes inside depend on the
    target lengths' values, which fake tensors cannot see."""
    if reduction not in ("none", "mean", "sum"):
        raise prims.InvalidArgumentError(f"{reduction} is not a valid value for reduction")
    batched = log_probs.ndim == 3
    shape = [log_probs.shape[1]] if batched and reduction == "none" else []
    requires_grad = torch.is_grad_enabled() and log_probs.requires_grad
    return TensorProxy(shape, log_probs.dtype, log_probs.device, requires_grad)


@torchsymbol(F.gaussian_nll_loss)
def gaussian_nll_loss(input, target, var, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
    """As eager, except that negative variances are not reported (that check reads values)."""
    if not isinstance(var, TensorProxy):
        var = mul(ones_like(input), var)
    if var.shape != input.shape:
        if input.shape[:-1] == var.shape:
            var = unsqueeze(var, -1)
        elif not (input.ndim == var.ndim
                  and builtins.sum(y for x, y in zip(input.shape, var.shape) if x != y) == 1):
            raise prims.InvalidArgumentError("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise prims.InvalidArgumentError(reduction + " is not valid")
    # eager clamps a clone of var in place under no_grad: clamped values, gradient as if unclamped
    clamped = clamp(var, min=eps)
    var = add(var, opaque_call(torch.detach, (sub(clamped, var),), {}))
    diff = sub(input, target)
    loss = mul(0.5, add(log(var), div(mul(diff, diff), var)))
    if full:
        loss = add(loss, 0.5 * math.log(2 * math.pi))
    return _reduce_loss(loss, reduction)


@opaque_with_meta(torch.istft)
def _istft_meta(input, n_fft, hop_length=None, win_length=None, window=None, center=True, normalized=False,
                onesided=None, length=None, return_complex=False):
    """The signal's length follows from the frame count and hop (torch's fake kernel instead runs
    a value check on the window envelope)."""
    if input.ndim not in (2, 3) or not input.dtype.is_complex:
        raise RuntimeError(f"istft expects a complex 2-D or 3-D input, got {input.ndim}-D {input.dtype}")
    n_fft = pyval(n_fft)
    win_length = n_fft if win_length is None else pyval(win_length)
    hop = win_length // 4 if hop_length is None else pyval(hop_length)
    frames = input.shape[-1]
    if length is not None:
        samples = pyval(length)
    else:
        samples = n_fft + hop * (frames - 1) - (2 * (n_fft // 2) if center else 0)
    dtype = input.dtype if return_complex else input.dtype.to_real()
    requires_grad = torch.is_grad_enabled() and input.requires_grad
    return TensorProxy(list(input.shape[:-2]) + [samples], dtype, input.device, requires_grad)


@torchsymbol(F.one_hot)
def one_hot(tensor, num_classes: int = -1):
    """With the number of classes given; inferring it (num_classes=-1) reads the largest value."""
    num_classes = pyval(num_classes)
    if num_classes == -1:
        raise DataDependentError("one_hot with num_classes=-1 is not supported: the number of classes "
                                 "is the largest value in the tensor, not known while tracing")
    if tensor.dtype != torch.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    classes = prims.iota(num_classes, 0, 1, torch.int64, tensor.device)
    return to_dtype(eq(unsqueeze(tensor, -1), classes), torch.int64)


# -- more activations and losses --------------------------------------------------------------------

@torchsymbol(F.glu)
def glu(input, dim: int = -1):
    dim = canonical_dim(dim, input.ndim)
    if input.shape[dim] % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim} is size {input.shape[dim]}")
    half = input.shape[dim] // 2
    a = narrow(input, dim, 0, half)
    b = narrow(input, dim, half, half)
    return mul(a, sigmoid(b))


@adapts(F.softmin)
def softmin(input, dim=None, _stacklevel=3, dtype=None):
    dim = _implicit_softmax_dim(input.ndim) if dim is None else dim
    return softmax(neg(to_dtype(input, dtype) if dtype is not None else input), dim)


def _legacy_reduction(size_average, reduce, reduction):
    """size_average/reduce, deprecated, still override reduction as in eager."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return ("mean" if size_average else "sum") if reduce else "none"


def _pointwise_loss(loss, reduction, weight=None):
    if weight is not None:
        loss = mul(loss, weight)
    return _reduce_loss(loss, reduction)


@torchsymbol(F.l1_loss)
def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    return _pointwise_loss(abs(sub(input, target)), _legacy_reduction(size_average, reduce, reduction), weight)


@torchsymbol(F.smooth_l1_loss)
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
    d = abs(sub(input, target))
    beta = pyval(beta)
    loss = d if beta == 0 else where(lt(d, beta), div(mul(mul(d, d), 0.5), beta), sub(d, 0.5 * beta))
    return _reduce_loss(loss, _legacy_reduction(size_average, reduce, reduction))


@torchsymbol(F.huber_loss)
def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    d = abs(sub(input, target))
    delta = pyval(delta)
    loss = where(lt(d, delta), mul(mul(d, d), 0.5), mul(sub(d, 0.5 * delta), delta))
    return _pointwise_loss(loss, reduction, weight)


@torchsymbol(F.binary_cross_entropy_with_logits)
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None):
    """(1 - t) x - (1 + (pw - 1) t) log sigmoid(x), with log sigmoid computed stably."""
    log_sig = sub(minimum(input, 0), log1p(exp(neg(abs(input)))))
    scale = 1 if pos_weight is None else add(mul(sub(pos_weight, 1), target), 1)
    loss = sub(mul(sub(1, target), input), mul(scale, log_sig))
    return _pointwise_loss(loss, _legacy_reduction(size_average, reduce, reduction), weight)


@torchsymbol(F.kl_div)
def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
    if log_target:
        loss = mul(exp(target), sub(target, input))
    else:
        loss = sub(where(eq(target, 0), 0.0, mul(target, log(target))), mul(target, input))
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction == "batchmean":
        return div(sum(loss), input.shape[0]) if input.ndim else sum(loss)
    return _reduce_loss(loss, reduction)


@torchsymbol(F.poisson_nll_loss)
def poisson_nll_loss(input, target, log_input: bool = True, full: bool = False, size_average=None,
                     eps: float = 1e-8, reduce=None, reduction: str = "mean"):
    if log_input:
        loss = sub(exp(input), mul(target, input))
    else:
        loss = sub(input, mul(target, log(add(input, eps))))
    if full:
        stirling = add(sub(mul(target, log(target)), target), mul(log(mul(target, 2 * math.pi)), 0.5))
        loss = add(loss, where(gt(target, 1), stirling, 0.0))
    return _reduce_loss(loss, _legacy_reduction(size_average, reduce, reduction))


@torchsymbol(F.margin_ranking_loss)
def margin_ranking_loss(input1, input2, target, margin: float = 0, size_average=None, reduce=None,
                        reduction: str = "mean"):
    loss = clamp(add(mul(neg(target), sub(input1, input2)), margin), min=0)
    return _reduce_loss(loss, _legacy_reduction(size_average, reduce, reduction))


@torchsymbol(F.hinge_embedding_loss)
def hinge_embedding_loss(input, target, margin: float = 1.0, size_average=None, reduce=None,
                         reduction: str = "mean"):
    margin_part = where(ne(target, 1), clamp(sub(margin, input), min=0), 0.0)
    self_part = where(ne(target, -1), input, 0.0)
    return _reduce_loss(add(margin_part, self_part), _legacy_reduction(size_average, reduce, reduction))


@torchsymbol(F.soft_margin_loss)
def soft_margin_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    loss = log1p(exp(mul(neg(target), input)))
    return _reduce_loss(loss, _legacy_reduction(size_average, reduce, reduction))


# -- more linear algebra ----------------------------------------------------------------------------

@torchsymbol(torch.outer, tensor_method("outer"), torch.ger, methods=["outer", "ger"])
def outer(a, b):
    return mul(unsqueeze(a, 1), b)


@torchsymbol(torch.dot, tensor_method("dot"), methods=["dot"])
def dot(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    return matmul(a, b)


@torchsymbol(torch.mv, tensor_method("mv"), methods=["mv"])
def mv(a, v):
    if a.ndim != 2 or v.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {a.ndim}, {v.ndim}")
    return matmul(a, v)


def _scaled_sum(a, product, beta, alpha):
    """beta * a + alpha * product; beta == 0 ignores a's values (nan and inf included), as eager does."""
    dtype = result_dtype(a, product)  # the scalars do not promote (an int addmv stays int)
    if not (dtype.is_floating_point or dtype.is_complex):  # eager converts them to the tensors' type
        alpha, beta = int(pyval(alpha)), int(pyval(beta))
    if pyval(alpha) != 1:
        product = to_dtype(mul(product, alpha), dtype)
    if pyval(beta) == 0:
        shape = broadcast_shapes(a.shape, product.shape)
        return broadcast_to(to_dtype(product, dtype), shape)
    return to_dtype(add(to_dtype(mul(a, beta), dtype) if pyval(beta) != 1 else a, product), dtype)


@torchsymbol(torch.addmv, tensor_method("addmv"), methods=["addmv"])
def addmv(a, mat, vec, *, beta=1, alpha=1):
    return _scaled_sum(a, mv(mat, vec), beta, alpha)


@torchsymbol(torch.addr, tensor_method("addr"), methods=["addr"])
def addr(a, vec1, vec2, *, beta=1, alpha=1):
    return _scaled_sum(a, outer(vec1, vec2), beta, alpha)


@torchsymbol(torch.addbmm, tensor_method("addbmm"), methods=["addbmm"])
def addbmm(a, batch1, batch2, *, beta=1, alpha=1):
    return _scaled_sum(a, sum(bmm(batch1, batch2), 0), beta, alpha)


@torchsymbol(torch.inner, tensor_method("inner"), methods=["inner"])
def inner(a, b):
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    k = a.shape[-1]
    out = matmul(reshape(a, [-1, k]), transpose(reshape(b, [-1, k]), 0, 1))
    return reshape(out, list(a.shape[:-1]) + list(b.shape[:-1]))


@torchsymbol(torch.trace, tensor_method("trace"), methods=["trace"])
def trace(a):
    if a.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {a.ndim}")
    return sum(diagonal(a))
