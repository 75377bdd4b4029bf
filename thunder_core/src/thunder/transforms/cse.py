"""Common-subexpression elimination: a computation the program repeats is computed once.

Two bound symbols compute the same value when they call the same symbol on the same arguments
(proxies by name, other values by equality); later uses of the repeat's outputs are renamed to the
first's. Random operations (every draw differs), opaque torch operations (Thunder cannot see their
effects) and anything with a side effect are never merged. Where the trace modifies tensors in
place, nothing that reads or makes a value such a write may change (the written tensors and
whatever may alias them) is merged: two equal values merged into one tensor would see each
other's modifications, and two reads of one tensor around a write differ.

A cast round trip through a wider floating-point type (``bf16 -> f32 -> bf16``, which every cast's
gradient rule produces where a value was upcast) is the value it started from, exactly, so uses of
the round trip's result read that value instead.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten, tree_map

from thunder import prims
from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace
from thunder.transforms.autodiff.inplace import substitute, written_groups
from thunder.transforms.dce import has_side_effect


def _key(bsym: BoundSymbol):
    """What identifies ``bsym``'s computation, or None when it must not be merged."""
    if any("random" in b.sym.tags or "opaque" in b.sym.tags or b.sym.module == "opaque" for b in bsym.walk()):
        return None
    if has_side_effect(bsym):
        return None
    leaves, spec = tree_flatten((bsym.args, bsym.kwargs))
    # the same computation inside and outside a no_grad region differs in what needs a gradient
    needs_grad = tuple(o.requires_grad for o in bsym.flat_proxy_outputs() if isinstance(o, TensorProxy))
    key = [bsym.sym.id, str(spec), needs_grad]
    for leaf in leaves:
        leaf = ("proxy", leaf.name) if isinstance(leaf, Proxy) else (type(leaf), leaf)
        try:
            hash(leaf)
        except TypeError:
            return None
        key.append(leaf)
    return tuple(key)


# dtypes that hold every value of the key dtype exactly
_EXACT_WIDENINGS = {torch.bfloat16: (torch.float32, torch.float64), torch.float16: (torch.float32, torch.float64),
                    torch.float32: (torch.float64,)}


def _round_trip_start(bsym: BoundSymbol, casts: dict[str, BoundSymbol]):
    """For ``convert(y, d)`` where ``y = convert(x, wider)`` and ``x`` has dtype ``d``: ``x``."""
    if bsym.sym.id != prims.convert_element_type.id:
        return None
    y, dtype = bsym.args[0], bsym.args[1]
    inner = casts.get(y.name) if isinstance(y, TensorProxy) else None
    x = inner.args[0] if inner is not None else None
    if isinstance(x, TensorProxy) and x.dtype == dtype and y.dtype in _EXACT_WIDENINGS.get(dtype, ()):
        return x
    return None


def _writable(trace: Trace):
    """The names of the values an in-place write of the trace may change: every tensor an
    operation with a side effect takes, and everything possibly aliased with one."""
    root, written = written_groups(trace.bound_symbols)
    if not written:
        return set()
    names = {p.name for b in trace.bound_symbols for p in (*b.flat_proxy_args(), *b.flat_proxy_outputs())
             if isinstance(p, TensorProxy)}
    return {n for n in names if root(n) in written}


def cse(trace: Trace) -> Trace:
    writable = _writable(trace)
    first: dict[tuple, BoundSymbol] = {}
    renamed: dict[str, Proxy] = {}
    kept: list[BoundSymbol] = []
    casts: dict[str, BoundSymbol] = {}  # output name -> the convert that made it
    inputs = {a.name for a in trace.args if isinstance(a, Proxy)}
    outputs = {o.name for o in tree_flatten(trace.output)[0] if isinstance(o, Proxy)}
    for bsym in trace.bound_symbols:
        if renamed:
            bsym = substitute(bsym, renamed)
        # a value a write may change is not merged with another, nor replaced by one
        touched = any(p.name in writable for p in (*bsym.flat_proxy_args(), *bsym.flat_proxy_outputs()))
        start = None if touched else _round_trip_start(bsym, casts)
        # (an output that would become one of the inputs stays a copy: callers may own both)
        if start is not None and start.name not in writable and \
                not (start.name in inputs and bsym.output.name in outputs):
            renamed[bsym.output.name] = start
            continue
        if bsym.sym.id == prims.convert_element_type.id:
            casts[bsym.output.name] = bsym
        key = None if touched else _key(bsym)
        earlier = first.get(key) if key is not None else None
        if earlier is not None:
            for repeat, original in zip(bsym.flat_proxy_outputs(), earlier.flat_proxy_outputs()):
                renamed[repeat.name] = original
            continue
        if key is not None:
            first[key] = bsym
        kept.append(bsym)
    if not renamed:
        return trace
    result = trace.derive("common subexpressions eliminated", kept)
    result.output = tree_map(lambda x: renamed.get(x.name, x) if isinstance(x, Proxy) else x, trace.output)
    return result
