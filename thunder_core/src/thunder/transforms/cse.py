"""Common-subexpression elimination: a computation the program repeats is computed once.

Two bound symbols compute the same value when they call the same symbol on the same arguments
(proxies by name, other values by equality); later uses of the repeat's outputs are renamed to the
first's. Random operations (every draw differs), opaque torch operations (Thunder cannot see their
effects) and anything with a side effect are never merged. A trace that modifies a tensor in place
is left as is: two equal values merged into one tensor would see each other's modifications.
"""

from __future__ import annotations

from torch.utils._pytree import tree_flatten, tree_map

from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace
from thunder.transforms.autodiff.inplace import substitute
from thunder.transforms.dce import has_side_effect


def _key(bsym: BoundSymbol):
    """What identifies ``bsym``'s computation, or None when it must not be merged."""
    if bsym.sym.module == "opaque" or has_side_effect(bsym):
        return None
    if any("random" in b.sym.tags or b.sym.module == "opaque" for b in bsym.walk()):
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


def _modifies_a_tensor(trace: Trace) -> bool:
    return any(has_side_effect(b) and any(isinstance(p, TensorProxy) for p in b.flat_proxy_args())
               for b in trace.bound_symbols)


def cse(trace: Trace) -> Trace:
    if _modifies_a_tensor(trace):
        return trace
    first: dict[tuple, BoundSymbol] = {}
    renamed: dict[str, Proxy] = {}
    kept: list[BoundSymbol] = []
    for bsym in trace.bound_symbols:
        if renamed:
            bsym = substitute(bsym, renamed)
        key = _key(bsym)
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
