"""Attention masks become additive biases once per program, not once per attention call.

A model passes one mask to every layer's attention (Hugging Face builds it once per forward).
Every attention call then converts it again: torch (eager, and Inductor's lowering) turns a
boolean mask into an additive bias in the query's dtype (0 where True, -inf where False) and
copies it into a buffer whose rows start at multiples of 16 elements, as the fused kernels need,
one extra kernel per layer. Done once in the trace, into a buffer already laid out that way, the
calls have nothing left to do: for a one-token forward of a 16-layer Llama that is 15 of 245
kernel launches. The bias is what torch computes from the mask, so results do not change.
"""

from __future__ import annotations

import torch

from thunder.core.proxies import TensorProxy
from thunder.core.trace import Trace
from thunder.torch import ALL as L
from thunder.transforms.causal_mask import rewrite_attention_calls
from thunder.transforms.dce import has_side_effect

ALIGNMENT = 16  # elements; torch's memory-efficient attention pads bias rows to this
_EXPANDS = {"ltorch.expand", "ltorch.broadcast_to", "ltorch.expand_as"}


def _converted(mask: TensorProxy, dtype, source: TensorProxy) -> TensorProxy:
    """The bias for ``mask``: computed from ``source`` (the mask before an expand, so the buffer
    holds no copies over batch or heads), rows aligned, then expanded like the mask was."""
    bias = source
    if bias.dtype == torch.bool:
        bias = L["masked_fill"](L["zeros"](source.shape, dtype=dtype, device=source.device),
                                L["logical_not"](source), float("-inf"))
    length = source.shape[-1]
    if length % ALIGNMENT:
        bias = L["narrow"](L["pad"](bias, (0, ALIGNMENT - length % ALIGNMENT)), -1, 0, length)
    if tuple(source.shape) != tuple(mask.shape):
        bias = L["expand"](bias, tuple(mask.shape))
    return bias


def share_attention_biases(trace: Trace) -> Trace:
    """``trace`` with each attention mask that needs converting (boolean, or rows not aligned)
    converted once, before its first attention call, and that bias passed to every call."""
    expanded_from, written = {}, set()
    for bsym in trace.bound_symbols:
        if has_side_effect(bsym):  # may write into a mask: then each call converts what it sees
            written.update(p.name for p in bsym.flat_proxy_args())
        if bsym.sym.id in _EXPANDS and bsym.args and isinstance(bsym.args[0], TensorProxy):
            source = bsym.args[0]
            expanded_from[bsym.output.name] = expanded_from.get(source.name, source)
    biases: dict[tuple, TensorProxy] = {}

    def with_bias(call):
        mask, query = call["attn_mask"], call["query"]
        if not (isinstance(mask, TensorProxy) and isinstance(query, TensorProxy) and mask.ndim >= 2):
            return None
        if mask.requires_grad or (mask.dtype != torch.bool and mask.shape[-1] % ALIGNMENT == 0):
            return None  # a learned bias keeps its gradient path; an aligned one needs nothing
        if mask.dtype != torch.bool and mask.dtype != query.dtype:
            return None  # a float mask of another dtype: left to torch
        source = expanded_from.get(mask.name, mask)
        if mask.name in written or source.name in written:
            return None
        key = (mask.name, query.dtype)
        if key not in biases:
            biases[key] = _converted(mask, query.dtype, source)
        return call | {"attn_mask": biases[key]}

    return rewrite_attention_calls(trace, "attention masks converted to biases once", with_bias)
