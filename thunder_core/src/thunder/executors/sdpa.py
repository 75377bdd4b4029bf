"""The attention executor: the training path of scaled_dot_product_attention on fused kernels.

For inference the torch executor already calls ``F.scaled_dot_product_attention``, which picks the
fastest kernel itself. Training is different: Thunder's own VJP rule recomputes the attention
probabilities with matmuls (an L x S matrix per head), while the fused kernels' backward only
needs the forward's per-row log-sum-exp, which only the fused forward computes. So this executor
gives autodiff a forward that also keeps the kernel's state (log-sum-exp, RNG offsets) and a
backward that consumes it:

- cuDNN attention for fp16/bf16 on Hopper and newer GPUs (with or without a mask): the fastest
  there, and what torch.compile picks; a mask broadcast over batch and heads (a causal mask
  [1, 1, L, S]) is passed as it is where this torch's cuDNN attention broadcasts it (probed once),
  since an expanded mask would be written out per head by Inductor (268 MB per call for 32 heads
  at 2048 tokens),
- flash attention (FlashAttention-2 in torch) for fp16/bf16 inputs without a mask elsewhere,
- memory-efficient attention for the rest: masks (boolean masks become additive biases), float32,

all through torch's ``aten`` ops, on CUDA; on CPU, torch's CPU flash-attention kernel. Attention
with dropout, or shapes no kernel takes, keep Thunder's rule. Grouped-query attention
(``enable_gqa``) repeats the key/value heads inside the kernel call and sums their gradients back.
"""

from __future__ import annotations

import functools
import math

import torch

from thunder.core.proxies import TensorProxy, pyval
from thunder.core.symbol import BoundSymbol, Symbol
from thunder.executors.base import OperatorExecutor

aten = torch.ops.aten
_HALF = (torch.float16, torch.bfloat16)


def _kernel(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """"cpu_flash", "cudnn", "cudnn_gqa" (cuDNN taking grouped K/V heads as they are),
    "cudnn_broadcast_mask" (cuDNN broadcasting the mask itself), "flash", "efficient", or None
    (this call keeps Thunder's rule)."""
    tensors = (query, key, value)
    if not all(isinstance(t, TensorProxy) and t.ndim == 4 for t in tensors):
        return None
    devices = {t.device.type for t in tensors}
    if pyval(dropout_p) != 0 or len({t.dtype for t in tensors}) != 1 or not query.dtype.is_floating_point:
        return None
    head_dim = query.shape[-1]
    if value.shape[-1] != head_dim or key.shape[1] != value.shape[1]:
        return None
    if query.shape[1] != key.shape[1] and not (enable_gqa and query.shape[1] % key.shape[1] == 0):
        return None
    mask_ok = attn_mask is None or (isinstance(attn_mask, TensorProxy) and not attn_mask.requires_grad)
    if devices == {"cpu"}:
        return "cpu_flash" if mask_ok and hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu") else None
    if devices != {"cuda"} or head_dim % 8:
        return None
    if query.dtype in _HALF and head_dim <= 128 and mask_ok and torch.backends.cuda.cudnn_sdp_enabled() \
            and _cudnn_available(query.device):
        grouped = query.shape[1] != key.shape[1] and attn_mask is None
        if grouped and _cudnn_takes_grouped_heads(query.device, query.dtype):
            return "cudnn_gqa"
        if attn_mask is not None and _cudnn_broadcasts_mask(query.device, query.dtype):
            return "cudnn_broadcast_mask"
        return "cudnn"
    if attn_mask is None and query.dtype in _HALF and head_dim <= 256:
        return "flash"
    if head_dim <= 128 and mask_ok:
        return "efficient"
    return None


def takes_grouped_heads(call: dict) -> bool:
    """Whether the attention call (its arguments by name) runs on a kernel that takes fewer
    key/value heads than query heads as they are."""
    return _kernel(**call) == "cudnn_gqa"


@functools.cache
def _cudnn_available(device) -> bool:
    """cuDNN attention with its backward, on a Hopper-or-newer GPU."""
    return (hasattr(aten, "_scaled_dot_product_cudnn_attention_backward") and torch.backends.cudnn.is_available()
            and torch.cuda.get_device_capability(device) >= (9, 0))


@functools.cache
def _cudnn_takes_grouped_heads(device, dtype) -> bool:
    """Whether this torch's cuDNN attention takes fewer key/value heads than query heads (grouped
    query attention without repeating K/V; torch 2.11 does): probed once with a small call."""
    try:
        q = torch.randn(1, 4, 64, 64, device=device, dtype=dtype)
        kv = torch.randn(1, 2, 64, 64, device=device, dtype=dtype)
        out, lse, _, _, _, _, seed, offset, _ = aten._scaled_dot_product_cudnn_attention(
            q, kv, kv, None, True, 0.0, True, False, scale=0.125)
        grads = aten._scaled_dot_product_cudnn_attention_backward(
            torch.ones_like(out), q, kv, kv, out, lse, seed, offset, None, None, None, 64, 64, 0.0, True,
            scale=0.125)
        repeated = kv.float().repeat_interleave(2, 1)
        reference = torch.nn.functional.scaled_dot_product_attention(
            q.float(), repeated, repeated, is_causal=True, scale=0.125)
        return (tuple(grads[1].shape) == tuple(kv.shape)
                and torch.allclose(out.float(), reference, atol=2e-2, rtol=2e-2))
    except RuntimeError:
        return False


@functools.cache
def _cudnn_broadcasts_mask(device, dtype) -> bool:
    """Whether this torch's cuDNN attention (forward and backward) takes an additive mask of shape
    [1, 1, L, S] for all batches and heads, with the results of the expanded mask: probed once.
    Any failure means no (the mask is then expanded, as before)."""
    try:
        q, k, v = (torch.randn(2, 4, 64, 64, device=device, dtype=dtype) for _ in range(3))
        bias = torch.randn(1, 1, 64, 64, device=device, dtype=dtype)

        def run(mask):
            out, lse, _, _, _, _, seed, offset, _ = aten._scaled_dot_product_cudnn_attention(
                q, k, v, mask, True, 0.0, False, False, scale=0.125)
            grads = aten._scaled_dot_product_cudnn_attention_backward(
                torch.ones_like(out), q, k, v, out, lse, seed, offset, mask, None, None, 64, 64, 0.0, False,
                scale=0.125)
            return (out, *grads)

        as_is, expanded = run(bias), run(bias.expand(2, 4, 64, 64))
        return all(torch.allclose(a.float(), b.float(), atol=1e-2, rtol=1e-2) for a, b in zip(as_is, expanded))
    except Exception:  # noqa: BLE001 - a probe: whatever fails, the kernel does not take it
        return False


def _expand_heads(x, heads: int):
    return x if x.shape[1] == heads else x.repeat_interleave(heads // x.shape[1], dim=1)


def _sum_heads(g, heads: int):
    if g.shape[1] == heads:
        return g
    b, _, s, e = g.shape
    return g.unflatten(1, (heads, -1)).sum(2)


def _bias(attn_mask, query, key, expand: bool = True):
    """The additive bias the kernels take, expanded to [batch, heads, L, S] (or, ``expand=False``,
    only given the four dimensions, for a kernel that broadcasts it), its last dim padded to 16."""
    if attn_mask is None:
        return None
    bias = attn_mask
    if bias.dtype == torch.bool:
        bias = torch.zeros(bias.shape, dtype=query.dtype, device=query.device).masked_fill_(~bias, float("-inf"))
    bias = bias.to(query.dtype)
    if expand:
        bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    else:
        bias = bias.reshape((1,) * (4 - bias.ndim) + tuple(bias.shape))
    s = key.shape[2]
    if s % 16 and not _rows_aligned(bias):
        bias = torch.nn.functional.pad(bias, (0, 16 - s % 16))[..., :s]
    return bias


def _rows_aligned(bias) -> bool:
    """Whether each row of ``bias`` already starts at a multiple of 16 elements (as the biases
    ``thunder.transforms.attention_bias`` makes do), so it needs no padded copy."""
    return bias.stride(-1) == 1 and all(st % 16 == 0 for st, n in zip(bias.stride()[:-1], bias.shape[:-1]) if n > 1)


def _cpu_bias(attn_mask, query):
    """The CPU kernel's mask: additive, in the inputs' dtype (as eager converts it)."""
    if attn_mask is None or attn_mask.dtype != torch.bool:
        return attn_mask if attn_mask is None else attn_mask.to(query.dtype)
    return torch.zeros(attn_mask.shape, dtype=query.dtype).masked_fill_(~attn_mask, float("-inf"))


def _contiguous_last(x):
    return x if x.stride(-1) == 1 else x.contiguous()


def _operands(kernel, query, key, value):
    """Query, key and value as the kernel takes them: unit stride in the last dimension, key and
    value heads repeated to the query's unless the kernel groups heads itself."""
    if kernel != "cudnn_gqa":
        key, value = (_expand_heads(t, query.shape[1]) for t in (key, value))
    return tuple(_contiguous_last(t) for t in (query, key, value))


def forward_impl(kernel, query, key, value, attn_mask, is_causal, scale):
    """Runs the fused forward; returns (output, log-sum-exp[, RNG seed, RNG offset]): the output
    and the kernel state its backward reads, all tensors, so fusion regions can hold the call."""
    q, k, v = _operands(kernel, query, key, value)
    if kernel == "cpu_flash":
        return aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, is_causal, attn_mask=_cpu_bias(attn_mask, q), scale=scale)
    if kernel == "flash":
        out, lse, _, _, _, _, seed, offset, _ = aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, is_causal, False, scale=scale)
    elif kernel.startswith("cudnn"):
        out, lse, _, _, _, _, seed, offset, _ = aten._scaled_dot_product_cudnn_attention(
            q, k, v, _bias(attn_mask, q, k, kernel != "cudnn_broadcast_mask"), True, 0.0, is_causal, False,
            scale=scale)
    else:
        out, lse, seed, offset = aten._scaled_dot_product_efficient_attention(
            q, k, v, _bias(attn_mask, q, k), True, 0.0, is_causal, scale=scale)
    return out, lse, seed, offset


def backward_impl(kernel, state, grad, query, key, value, attn_mask, is_causal, scale):
    """The gradients of query, key and value; ``state`` is what ``forward_impl`` returned."""
    out, lse, seed, offset = state if len(state) == 4 else (*state, None, None)
    q, k, v = _operands(kernel, query, key, value)
    grad = _contiguous_last(grad)  # the kernels take strided layouts (the permuted view from o_proj)
    if kernel == "cpu_flash":
        gq, gk, gv = aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad, q, k, v, out, lse, 0.0, is_causal, attn_mask=_cpu_bias(attn_mask, q), scale=scale)
    elif kernel == "flash":
        gq, gk, gv = aten._scaled_dot_product_flash_attention_backward(
            grad, q, k, v, out, lse, None, None, q.shape[2], k.shape[2], 0.0, is_causal, seed, offset,
            scale=scale)
    elif kernel.startswith("cudnn"):
        gq, gk, gv = aten._scaled_dot_product_cudnn_attention_backward(
            grad, q, k, v, out, lse, seed, offset, _bias(attn_mask, q, k, kernel != "cudnn_broadcast_mask"),
            None, None, q.shape[2], k.shape[2], 0.0, is_causal, scale=scale)
    else:
        gq, gk, gv, _ = aten._scaled_dot_product_efficient_attention_backward(
            grad, q, k, v, _bias(attn_mask, q, k), out, lse, seed, offset, 0.0, [True, True, True, False],
            is_causal, scale=scale)
    return gq, _sum_heads(gk, key.shape[1]), _sum_heads(gv, value.shape[1])


def _forward_meta(kernel, query, key, value, attn_mask, is_causal, scale):
    """The forward's outputs, from torch's meta kernels of the same call."""
    def meta(t):
        return None if t is None else torch.empty(t.shape, dtype=t.dtype, device="meta")

    outs = forward_impl(kernel, meta(query), meta(key), meta(value), meta(attn_mask), is_causal, scale)
    return tuple(TensorProxy(t.shape, t.dtype, query.device) for t in outs)


def _backward_meta(kernel, state, grad, query, key, value, attn_mask, is_causal, scale):
    return tuple(TensorProxy(t.shape, t.dtype, t.device) for t in (query, key, value))


class _Namespace:
    """What ``attention`` names in a trace before the executor claims it."""


namespace = _Namespace()
forward_symbol = Symbol("forward", _forward_meta, module="attention", is_prim=True, module_object=namespace)
backward_symbol = Symbol("backward", _backward_meta, module="attention", is_prim=True, module_object=namespace)
# The same kernels for grouped-query attention whose key/value heads the call repeats. These stay
# between fusion regions: inside one, Inductor fuses the repeat with the rotary embedding that
# produces K/V into copy kernels that cost more than the repeat itself (measured on the H200 with
# HF Llama-3.2-1B-shaped training: four ~80 us copy kernels per layer).
forward_gqa_symbol = Symbol("forward_gqa", _forward_meta, module="attention", is_prim=True, module_object=namespace)
backward_gqa_symbol = Symbol("backward_gqa", _backward_meta, module="attention", is_prim=True,
                             module_object=namespace)
namespace.forward = namespace.forward_gqa = forward_impl
namespace.backward = namespace.backward_gqa = backward_impl


def _repeats_heads(call) -> bool:
    return call["query"].shape[1] != call["key"].shape[1] and _kernel(**call) != "cudnn_gqa"


def _arguments(bsym):
    from thunder.transforms.autodiff.rules import bind

    args, kwargs = bind(bsym)
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    return dict(zip(names, args)) | kwargs


def _scale(call) -> float:
    scale = pyval(call["scale"])
    return 1.0 / math.sqrt(call["query"].shape[-1]) if scale is None else float(scale)


def vjp_forward(bsym: BoundSymbol):
    """The fused forward replacing ``bsym``: the same output plus the kernel's state."""
    call = _arguments(bsym)
    args = (_kernel(**call), call["query"], call["key"], call["value"], call["attn_mask"],
            bool(pyval(call["is_causal"])), _scale(call))
    out, *state = _forward_meta(*args)
    state = [bsym.output, *state]
    symbol = forward_gqa_symbol if _repeats_heads(call) else forward_symbol
    return BoundSymbol(symbol, args, {}, tuple(state), [], bsym.source), state


def vjp_backward(bsym: BoundSymbol, residuals, grad):
    """Records the fused backward; returns the gradients of (query, key, value)."""
    call = _arguments(bsym)
    symbol = backward_gqa_symbol if _repeats_heads(call) else backward_symbol
    return symbol(_kernel(**call), tuple(residuals), grad, call["query"], call["key"], call["value"],
                           call["attn_mask"], bool(pyval(call["is_causal"])), _scale(call))


class SDPAExecutor(OperatorExecutor):
    default_devices = ("cuda", "cpu")

    def __init__(self):
        super().__init__("sdpa", priority=50)
        # built from aten calls only, so a fusion region (torch.compile) can hold them
        self.register(forward_symbol.id, forward_impl, traceable=True)
        self.register(backward_symbol.id, backward_impl, traceable=True)
        self.register(forward_gqa_symbol.id, forward_impl)
        self.register(backward_gqa_symbol.id, backward_impl)
        self.register_vjp("ltorch.scaled_dot_product_attention", vjp_forward, vjp_backward,
                          checker=lambda *args, **kwargs: _kernel(*args, **kwargs) is not None)


sdpa_executor = SDPAExecutor()
