"""Dead-code elimination: drops bound symbols whose outputs nothing uses.

A bound symbol with a side effect is always kept: one with no proxy outputs (``__setitem__``,
grad-mode changes), one that returns one of its inputs (in-place ops), or one whose symbol is
tagged ``side_effect``.
"""

from __future__ import annotations

from torch.utils._pytree import tree_flatten

from thunder.core.proxies import Proxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace


def has_side_effect(bsym: BoundSymbol) -> bool:
    outputs = bsym.flat_proxy_outputs()
    if not outputs or "side_effect" in bsym.sym.tags:
        return True
    inputs = {id(p) for p in bsym.flat_proxy_args()}
    return any(id(o) in inputs for o in outputs)


def dce(trace: Trace) -> Trace:
    needed = {p.name for p in tree_flatten(trace.output)[0] if isinstance(p, Proxy)}
    kept: list[BoundSymbol] = []
    for bsym in reversed(trace.bound_symbols):
        if has_side_effect(bsym) or any(o.name in needed for o in bsym.flat_proxy_outputs()):
            kept.append(bsym)
            needed.update(p.name for p in bsym.flat_proxy_args())
    if len(kept) == len(trace.bound_symbols):
        return trace
    kept.reverse()
    return trace.derive("dead code eliminated", kept)
