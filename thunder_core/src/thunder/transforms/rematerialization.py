"""Rematerialization: recompute cheap intermediates in the backward instead of saving them.

After autodiff, the forward saves every value the backward reads. Many of those are produced by
cheap elementwise or shape operations from other values (``gelu``'s ``erf`` term from its input,
a bool mask from a comparison). For each residual, largest first, this pass looks at the cheap
operations that produce it, back to values that are saved anyway (other residuals, or inputs of
the computation, which stay alive outside it: parameters, the batch). If the values that would
newly have to be saved take fewer bytes than the residual itself, the residual is dropped from the
saved set and its producers are replayed in the backward, each just before its first use.

Random operations are never cheap, so a dropout mask is saved, never drawn again. A tensor the
forward modifies in place (``mask[i, :j] = 0``) is saved as it is, never recomputed from the
producer that made it before the modification.

Activation checkpointing (``thunder.transforms.checkpoint``) uses the same replay with another
test: a residual computed inside a checkpointed region is always recomputed, from the values that
enter the region, through every replayable operation of the region (anything but random draws,
operations run through torch's autograd, and operations with side effects).
"""

from __future__ import annotations

from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.transforms import checkpoint
from thunder.transforms.dce import has_side_effect

_CHEAP_PRIMS = {"broadcast_in_dim", "reshape", "transpose", "squeeze", "convert_element_type", "full",
                "iota", "where", "slice", "cat", "pad", "flip"}


def _is_cheap(bsym: BoundSymbol) -> bool:
    """Elementwise or shape work all the way down (no reductions, matmuls, randomness, opaque ops)."""
    for b in bsym.walk():
        if b.subsymbols:
            continue
        if b.sym.module != "prims" or "random" in b.sym.tags:
            return False
        if "elementwise" not in b.sym.tags and b.sym.name not in _CHEAP_PRIMS:
            return False
    return bool(bsym.subsymbols) or bsym.sym.module == "prims"


def _replayable(bsym: BoundSymbol) -> bool:
    """A symbol that can run again in the backward with the same result."""
    if has_side_effect(bsym):
        return False
    return not any("random" in b.sym.tags or "opaque_autograd" in b.sym.tags for b in bsym.walk())


def _nbytes(p) -> int:
    return p.numel() * p.dtype.itemsize if isinstance(p, TensorProxy) else 0


def rematerialize(split):
    """``split`` (a ``ForwardBackward``) with cheap residuals recomputed in its backward."""
    forward, backward = split.forward, split.backward
    producer: dict[str, BoundSymbol | None] = {}
    rebinders: dict[str, list] = {}  # name -> symbols returning it unchanged (``contiguous``), replayed with it
    for b in forward.bound_symbols:
        args = {id(p) for p in b.flat_proxy_args()}
        for o in b.flat_proxy_outputs():
            if id(o) not in args:
                producer[o.name] = b
            elif "opaque" in b.sym.tags:  # modified in place: the saved value is not its producer's
                producer[o.name] = None
            else:
                rebinders.setdefault(o.name, []).append(b)
    for name in _modified_in_place(forward):
        producer[name] = None  # its saved value is not what its producer computed
    inputs = {a.name for a in forward.args}
    saved: dict[str, Proxy] = {r.name: r for r in split.residuals}
    replay: dict[str, BoundSymbol] = {}  # output name -> forward bound symbol replayed in the backward

    for r in split.residuals:  # checkpointed regions: recompute whatever can be, region by region
        b = producer.get(r.name)
        region = checkpoint.region_of(b) if b is not None else None
        if r.name not in saved or region is None or not _replayable(b):
            continue
        chain, frontier = _cheap_producers(
            r, producer, inputs, saved, lambda b, region=region: checkpoint.region_of(b) == region and _replayable(b))
        del saved[r.name]
        saved.update(frontier)
        for b in chain:
            for o in b.flat_proxy_outputs():
                replay[o.name] = b

    for r in sorted(split.residuals, key=_nbytes, reverse=True):
        b = producer.get(r.name)
        if r.name not in saved or b is None or not _is_cheap(b):
            continue
        chain, frontier = _cheap_producers(r, producer, inputs, saved, _is_cheap)
        added = sum(_nbytes(p) for name, p in frontier.items() if name not in saved and name not in inputs)
        if added < _nbytes(r):
            del saved[r.name]
            saved.update(frontier)
            for b in chain:
                for o in b.flat_proxy_outputs():
                    replay[o.name] = b
    if not replay:
        return split

    residuals = list(saved.values())
    cotangents = backward.args[len(split.residuals):]
    available = {p.name for p in residuals + cotangents}
    bsyms: list[BoundSymbol] = []

    def ensure(p) -> None:
        if not isinstance(p, Proxy) or p.name in available:
            return
        b = replay[p.name]
        for q in b.flat_proxy_args():
            ensure(q)
        bsyms.append(b)
        for o in b.flat_proxy_outputs():
            bsyms.extend(rebinders.get(o.name, ()))
        available.update(o.name for o in b.flat_proxy_outputs())

    for b in backward.bound_symbols:
        for p in b.flat_proxy_args():
            ensure(p)
        bsyms.append(b)
        available.update(o.name for o in b.flat_proxy_outputs())
    for p in backward.output:
        ensure(p)

    new_backward = backward.derive("backward: cheap intermediates recomputed", bsyms)
    new_backward.args = residuals + list(cotangents)
    new_forward = forward.derive(forward.stage, forward.bound_symbols)
    new_forward.output = (forward.output[0], tuple(residuals))
    return type(split)(new_forward, new_backward, residuals, split.grad_outputs, split.reaches)


def _modified_in_place(trace) -> set[str]:
    """Tensors a side-effecting symbol receives (``t[i] = 0``, which returns nothing, among them),
    and, since such a tensor may be a view, the tensors it was computed from by cheap operations."""
    producer = {o.name: b for b in trace.bound_symbols if not has_side_effect(b) for o in b.flat_proxy_outputs()}
    stack = [p for b in trace.bound_symbols if has_side_effect(b)
             for p in b.flat_proxy_args() if isinstance(p, TensorProxy)]
    modified: set[str] = set()
    while stack:
        p = stack.pop()
        if p.name in modified:
            continue
        modified.add(p.name)
        b = producer.get(p.name)
        if b is not None and _is_cheap(b):
            stack.extend(q for q in b.flat_proxy_args() if isinstance(q, TensorProxy))
    return modified


def _cheap_producers(r, producer, inputs, saved, replayable):
    """The ``replayable`` bound symbols that compute ``r`` from values saved anyway, and those
    values."""
    chain: dict[int, BoundSymbol] = {}
    frontier: dict[str, Proxy] = {}
    stack = [r]
    while stack:
        p = stack.pop()
        if p is not r and (p.name in inputs or p.name in saved):
            frontier[p.name] = p
            continue
        b = producer.get(p.name)
        if b is None or not replayable(b):
            frontier[p.name] = p
            continue
        if id(b) not in chain:
            chain[id(b)] = b
            stack.extend(b.flat_proxy_args())
    return list(chain.values()), frontier

