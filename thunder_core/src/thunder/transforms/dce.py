"""Dead-code elimination: drops bound symbols whose outputs nothing uses.

A bound symbol with a side effect is always kept: one with no proxy outputs (``__setitem__``,
grad-mode changes), one that returns one of its inputs (in-place ops), or one whose symbol is
tagged ``side_effect``. So is a random draw whose value nothing uses (a layer-drop test decided
while tracing): it advances the generator, and later draws must see the state eager leaves.

A torch-language call that returns its input unchanged (``x.to(x.dtype)``, ``contiguous()`` of a
contiguous tensor, a full slice) computes nothing and is dropped: left in, it would look like an
in-place op and split fusion regions.
"""

from __future__ import annotations

from torch.utils._pytree import tree_flatten

from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace


def has_side_effect(bsym: BoundSymbol) -> bool:
    outputs = bsym.flat_proxy_outputs()
    if not outputs or "side_effect" in bsym.sym.tags:
        return True
    inputs = {id(p) for p in bsym.flat_proxy_args()}
    return any(id(o) in inputs for o in outputs)


def writes_a_tensor(bsym: BoundSymbol) -> bool:
    """An operation that may modify a tensor it takes (an in-place write; an operation returning
    its input unchanged, a no-op ``.to``, is not one)."""
    return has_side_effect(bsym) and not is_identity(bsym) and \
        any(isinstance(p, TensorProxy) for p in bsym.flat_proxy_args())


def is_identity(bsym: BoundSymbol) -> bool:
    """A torch-language symbol whose outputs are all among its inputs (in-place torch operations
    are opaque symbols, never torch-language ones)."""
    if bsym.sym.module != "ltorch" or "side_effect" in bsym.sym.tags:
        return False
    outputs = bsym.flat_proxy_outputs()
    inputs = {id(p) for p in bsym.flat_proxy_args()}
    return bool(outputs) and all(id(o) in inputs for o in outputs)


def draws_random(bsym: BoundSymbol) -> bool:
    """Whether ``bsym`` (or a symbol of its decomposition) draws random numbers."""
    return any("random" in b.sym.tags for b in bsym.walk())


def dce(trace: Trace) -> Trace:
    needed = {p.name for p in tree_flatten(trace.output)[0] if isinstance(p, Proxy)}
    kept: list[BoundSymbol] = []
    for bsym in reversed(trace.bound_symbols):
        if is_identity(bsym):
            continue
        if has_side_effect(bsym) or any(o.name in needed for o in bsym.flat_proxy_outputs()) or draws_random(bsym):
            kept.append(bsym)
            needed.update(p.name for p in bsym.flat_proxy_args())
    if len(kept) == len(trace.bound_symbols):
        return trace
    kept.reverse()
    return trace.derive("dead code eliminated", kept)
