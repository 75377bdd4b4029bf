"""Rematerialization: recompute cheap intermediates in the backward instead of saving them.

After autodiff, the forward saves every value the backward reads. Many of those are produced by
cheap elementwise or shape operations from other values (``gelu``'s ``erf`` term from its input,
an fp32 copy of a bf16 activation, rotary embeddings of a projection's output). Which values to
save is a minimum cut: in the graph of cheap operations that lead to the residuals, find the set of
values of fewest bytes from which every residual can be recomputed (values alive anyway, the
computation's inputs such as parameters and the batch, cost nothing). The residuals not in that
set are recomputed in the backward, each operation just before its first use.

Two kinds of values are never recomputed. Random operations are not cheap, so a dropout mask is
saved, never drawn again; a tensor the forward modifies in place (``mask[i, :j] = 0``) is saved as
it is, never recomputed from the producer that made it before the modification. And a residual
the backward hands to an operation that cannot compute its inputs on the fly (a matmul, fused
attention) is saved: recomputing it would cost a kernel that writes it out again, while the
forward wrote it already (the ``silu(a) * b`` a projection's weight gradient reads).

Activation checkpointing (``thunder.transforms.checkpoint``) uses the same replay with another
test: a residual computed inside a checkpointed region is always recomputed, from the values that
enter the region, through every replayable operation of the region (anything but random draws,
operations run through torch's autograd, and operations with side effects).
"""

from __future__ import annotations

from collections import deque

from thunder import prims
from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.transforms import checkpoint
from thunder.transforms.dce import has_side_effect

_CHEAP_PRIMS = {"broadcast_in_dim", "reshape", "transpose", "squeeze", "convert_element_type", "full",
                "iota", "where", "slice", "cat", "pad", "flip"}


def _only_prims(bsym: BoundSymbol, accepted) -> bool:
    """Whether every primitive ``bsym`` decomposes into is deterministic and ``accepted(symbol)``
    (a symbol without a decomposition into primitives, an opaque op, is not)."""
    for b in bsym.walk():
        if b.subsymbols:
            continue
        if b.sym.module != "prims" or "random" in b.sym.tags or not accepted(b.sym):
            return False
    return True


def _is_cheap(bsym: BoundSymbol) -> bool:
    """Elementwise or shape work all the way down (no reductions, matmuls, randomness, opaque ops)."""
    return _only_prims(bsym, lambda s: "elementwise" in s.tags or s.name in _CHEAP_PRIMS) and \
        (bool(bsym.subsymbols) or bsym.sym.module == "prims")


def _fuses_its_inputs(bsym: BoundSymbol) -> bool:
    """Elementwise, shape and reduction work, which a fused kernel computes from its inputs'
    producers on the fly (a matmul or fused attention reads its inputs from memory)."""
    return _only_prims(bsym, lambda s: "elementwise" in s.tags or "reduction" in s.tags or s.name in _CHEAP_PRIMS)


def _read_from_memory(trace) -> set[str]:
    """Values of ``trace`` that an operation which does not fuse its inputs reads, directly or
    through views (``reshape`` then ``matmul``)."""
    read: set[str] = set()
    for b in reversed(trace.bound_symbols):
        views = _only_prims(b, lambda s: s.name in prims.VIEW_PRIMS)
        if not _fuses_its_inputs(b) or (views and any(o.name in read for o in b.flat_proxy_outputs())):
            read.update(p.name for p in b.flat_proxy_args())
    return read


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

    # everything else: save the fewest bytes, recompute the rest through cheap operations
    read_whole = _read_from_memory(backward)
    recomputable = {name: b for name, b in producer.items()
                    if b is not None and _is_cheap(b) and name not in read_whole and name not in replay}
    keep = _fewest_bytes_to_save(saved, recomputable, inputs)
    for r in list(saved.values()):
        if r.name in keep:
            continue
        chain, frontier = _cheap_producers(r, producer, inputs, keep, _is_cheap)
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


def _fewest_bytes_to_save(needed: dict[str, Proxy], recomputable: dict[str, BoundSymbol], inputs) -> dict[str, Proxy]:
    """The values of fewest total bytes from which every ``needed`` value can be recomputed
    through the ``recomputable`` producers: a minimum cut, found as a maximum flow.

    Each value ``v`` is an edge ``v.in -> v.out`` whose capacity is the bytes saving it costs (zero
    for the computation's inputs); a recomputable value's sources feed its ``in`` side, values that
    cannot be recomputed are fed by the source, and needed values drain to the sink. Of the minimum
    cuts, the one nearest the sink is taken: among equal byte counts, the least recomputation."""
    INF = float("inf")
    capacity: dict[tuple, float] = {}
    edges: dict[object, set] = {"source": set(), "sink": set()}

    def edge(a, b, c):
        capacity[(a, b)] = capacity.get((a, b), 0) + c
        capacity.setdefault((b, a), 0)
        edges.setdefault(a, set()).add(b)
        edges.setdefault(b, set()).add(a)

    values: dict[str, Proxy] = {}
    stack = list(needed.values())
    while stack:
        v = stack.pop()
        if v.name in values:
            continue
        values[v.name] = v
        edge((v.name, "in"), (v.name, "out"), 0 if v.name in inputs else _nbytes(v))
        b = recomputable.get(v.name)
        if b is None or v.name in inputs:
            edge("source", (v.name, "in"), INF)
            continue
        for a in b.flat_proxy_args():
            if isinstance(a, Proxy):
                edge((a.name, "out"), (v.name, "in"), INF)
                stack.append(a)
    for name in needed:
        edge((name, "out"), "sink", INF)

    while True:  # Edmonds-Karp: augment along shortest paths until the sink is cut off
        parent = {"source": None}
        queue = deque(["source"])
        while queue and "sink" not in parent:
            a = queue.popleft()
            for b in edges[a]:
                if b not in parent and capacity[(a, b)] > 0:
                    parent[b] = a
                    queue.append(b)
        if "sink" not in parent:
            break
        path, b = [], "sink"
        while parent[b] is not None:
            path.append((parent[b], b))
            b = parent[b]
        flow = min(capacity[e] for e in path)  # finite: every path crosses some value's edge
        for a, b in path:
            capacity[(a, b)] -= flow
            capacity[(b, a)] += flow

    reaches_sink = {"sink"}
    queue = deque(["sink"])
    while queue:
        b = queue.popleft()
        for a in edges[b]:
            if a not in reaches_sink and capacity[(a, b)] > 0:
                reaches_sink.add(a)
                queue.append(a)
    return {name: v for name, v in values.items()
            if (name, "out") in reaches_sink and (name, "in") not in reaches_sink}


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

