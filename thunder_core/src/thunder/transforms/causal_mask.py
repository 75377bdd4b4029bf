"""Causal masks built by the program become ``is_causal=True`` in attention calls.

Libraries often build the causal mask themselves: Hugging Face does whenever it cannot rule out
padding, which includes every call under a compiler (its ``sdpa_mask`` compares
``kv_idx <= q_idx`` for two ranges). Given the mask, a fused attention kernel computes every
block of the L x S score matrix and reads the mask; given ``is_causal=True`` it skips the blocks
above the diagonal (about half the work) and reads nothing.

The rewrite applies only where the mask provably equals torch's causal mask (``j <= i``) of a
square score matrix (L == S, where top-left and bottom-right alignment agree): the mask is
``le(k_index, q_index)`` (or ``ge(q_index, k_index)``), possibly expanded over batch and heads,
where each index is an integer ``arange`` with step 1, shifted by constants, laid along the key
(last) and query (second to last) axes by views, and both have the same offset. An in-place
change to such a range after views of it were taken makes the analysis give up on it.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_map

from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.trace import Trace, tracing
from thunder.torch import ALL as L
from thunder.transforms.autodiff.inplace import substitute
from thunder.transforms.autodiff.rules import bind
from thunder.transforms.dce import has_side_effect

_INTEGER = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_VIEWS = {"ltorch.reshape", "ltorch.view", "ltorch.unsqueeze", "ltorch.getitem", "ltorch.contiguous"}
_EXPANDS = {"ltorch.expand", "ltorch.broadcast_to", "ltorch.expand_as"}
_IN_PLACE_ADDS = {"opaque.Tensor___iadd__", "opaque.Tensor_add_"}


def _int(x) -> int | None:
    return x if type(x) is int else None


def _single_axis(shape) -> int | None:
    """The one dimension of ``shape`` longer than 1 (as a negative index), if there is exactly one."""
    long = [i - len(shape) for i, n in enumerate(shape) if n != 1]
    return long[0] if len(long) == 1 else None


def _plain_index(index) -> bool:
    """A ``getitem`` index that only adds dimensions or takes whole ones (None, ..., [:])."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or i == slice(None) for i in items)


class _Ranges:
    """For each tensor known to hold ``offset + position along one axis``: (offset, axis, root),
    ``root`` naming the ``arange`` all its views share memory with."""

    def __init__(self):
        self.forms: dict[str, tuple[int, int, str]] = {}

    def of(self, x):
        return self.forms.get(x.name) if isinstance(x, TensorProxy) else None

    def forget_root(self, root: str) -> None:
        self.forms = {k: v for k, v in self.forms.items() if v[2] != root}

    def step(self, bsym) -> None:
        sid, args, out = bsym.sym.id, bsym.args, bsym.output
        if sid in _IN_PLACE_ADDS and len(args) == 2 and self.of(args[0]) and _int(args[1]) is not None \
                and not bsym.kwargs:
            offset, axis, root = self.of(args[0])
            if sum(1 for v in self.forms.values() if v[2] == root) == 1:  # no views of it to go stale
                self.forms[args[0].name] = (offset + args[1], axis, root)
                return
        if has_side_effect(bsym):
            for p in bsym.flat_proxy_args():
                if self.of(p):
                    self.forget_root(self.of(p)[2])
            return
        if not isinstance(out, TensorProxy) or out.dtype not in _INTEGER:
            return
        if sid == "ltorch.arange":
            bounds = [_int(a) for a in args]
            step = _int(bsym.kwargs.get("step", 1))
            if len(bounds) == 3:
                step = bounds.pop()
            if args and None not in bounds and step == 1 and out.ndim == 1 and out.shape[0] > 1:
                self.forms[out.name] = (bounds[0] if len(bounds) == 2 else 0, -1, out.name)
            return
        form = self.of(args[0]) if args else None
        if form is None or out.ndim == 0:
            return
        offset, axis, root = form
        n = args[0].shape[axis]
        if sid == "ltorch.add" and len(args) == 2 and _int(args[1]) is not None and not bsym.kwargs:
            if tuple(out.shape) == tuple(args[0].shape):
                self.forms[out.name] = (offset + args[1], axis, out.name)
        elif sid in _VIEWS and _single_axis(args[0].shape) == axis:
            if sid == "ltorch.getitem" and not _plain_index(args[1]):
                return
            new_axis = _single_axis(out.shape)  # element order kept, one long axis: the same run
            if new_axis is not None and out.shape[new_axis] == n:
                self.forms[out.name] = (offset, new_axis, root)
        elif sid in _EXPANDS and out.ndim >= -axis and out.shape[axis] == n:
            self.forms[out.name] = (offset, axis, root)


def _causal_mask_of(bsym, ranges: _Ranges) -> tuple[int, int] | None:
    """``(L, S)`` if ``bsym`` computes the causal mask of L queries and S keys."""
    if bsym.sym.id not in ("ltorch.le", "ltorch.ge") or len(bsym.args) != 2 or bsym.kwargs:
        return None
    key, query = bsym.args if bsym.sym.id == "ltorch.le" else reversed(bsym.args)
    k, q = ranges.of(key), ranges.of(query)
    if k is None or q is None or k[0] != q[0] or k[1] != -1 or q[1] != -2:
        return None
    if query.shape[-2] != key.shape[-1]:
        return None  # fused kernels disagree on how a non-square causal mask is aligned
    return query.shape[-2], key.shape[-1]


def use_causal_flag(trace: Trace) -> Trace:
    """``trace`` with attention calls given a provably causal mask calling ``is_causal=True``."""

    ranges = _Ranges()
    masks: dict[str, tuple[int, int]] = {}
    for bsym in trace.bound_symbols:
        shape = _causal_mask_of(bsym, ranges)
        source = bsym.args[0] if bsym.args and isinstance(bsym.args[0], TensorProxy) else None
        if shape is None and bsym.sym.id in _EXPANDS and source is not None and source.name in masks:
            shape = masks[source.name]  # the same mask for more batch entries or heads
            shape = shape if tuple(bsym.output.shape[-2:]) == shape else None
        if shape is not None:
            masks[bsym.output.name] = shape
        ranges.step(bsym)
    if not masks:
        return trace

    def causal(call):
        mask = call["attn_mask"]
        if isinstance(mask, TensorProxy) and mask.name in masks and call["is_causal"] is False \
                and masks[mask.name] == (call["query"].shape[-2], call["key"].shape[-2]):
            return call | {"attn_mask": None, "is_causal": True}
        return None

    return rewrite_attention_calls(trace, "causal masks given as is_causal", causal)


def rewrite_attention_calls(trace: Trace, description: str, rewrite) -> Trace:
    """``trace`` with each attention call recorded again with the arguments ``rewrite(call)`` returns
    (``call``: the call's arguments by name), or kept where it returns None. Operations ``rewrite``
    records land right before the call, with its source line; later uses of a rewritten call's
    output use the new one."""
    new = trace.derive(description)
    new.bound_symbols.clear()
    renamed: dict[str, Proxy] = {}
    with tracing(new):
        for bsym in trace.bound_symbols:
            if renamed:
                bsym = substitute(bsym, renamed)
            start = len(new.bound_symbols)
            call = None
            if bsym.sym.id == "ltorch.scaled_dot_product_attention":
                args, kwargs = bind(bsym)
                call = rewrite(dict(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
                                         "enable_gqa"), args)) | kwargs)
            if call is None:
                new.bound_symbols.append(bsym)
                continue
            with torch.set_grad_enabled(bsym.output.requires_grad):
                out = L["scaled_dot_product_attention"](**call)
            for b in new.bound_symbols[start:]:
                b.source = bsym.source
            renamed[bsym.output.name] = out
    if not renamed:
        return trace
    new.output = tree_map(lambda x: renamed.get(x.name, x) if isinstance(x, Proxy) else x, trace.output)
    return new
