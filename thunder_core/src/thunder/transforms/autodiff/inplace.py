"""Functionalization of in-place operations on intermediates, so that they can be differentiated.

Acquisition records an in-place torch operation (``x += y``, ``x.masked_fill_(m, v)``,
``F.relu(x, inplace=True)``) as an opaque symbol whose output *is* its input proxy: after it, the
same name stands for a different value. Autodiff cannot differentiate that, and a backward that
reads ``x`` as a residual would read the modified value. Hugging Face BERT (``embeddings +=``)
and T5 do this on activations.

``functionalize(trace)`` rewrites each in-place operation on a value that the trace itself
produced fresh (not an input: a parameter's or buffer's update must stay visible; not a view and
not viewed: the modification would have to reach the aliases) into its out-of-place torch
operation, converted back to the modified value's dtype as in-place semantics require, and
renames every later use of the value to the new result. In-place operations it cannot rewrite
stay as they are (autodiff then falls back to eager autograd when they touch a value that needs
a gradient).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._pytree import tree_flatten, tree_map

import thunder.torch as ltorch
from thunder import prims
from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace, tracing
from thunder.torch.opaque import shares_memory_with_inputs
from thunder.torch.registry import SYMBOL_TO_TORCH
from thunder.transforms import checkpoint
from thunder.transforms.dce import writes_a_tensor

_OPERATORS = {"__iadd__": torch.add, "__isub__": torch.sub, "__imul__": torch.mul, "__itruediv__": torch.div}
# in-place methods without an out-of-place twin of the same meaning, or that draw random numbers
_NOT_REWRITTEN = {"requires_grad_", "set_", "resize_", "resize_as_", "share_memory_", "copy_", "zero_",
                  "uniform_", "normal_", "bernoulli_", "random_", "exponential_", "geometric_",
                  "cauchy_", "log_normal_", "retain_grad", "detach_", "index_put_", "put_"}


def _out_of_place(fn, kwargs):
    """(out-of-place torch callable, its kwargs) for in-place ``fn``, or None."""
    name = getattr(fn, "__name__", "")
    if "out" in kwargs or name == "__setitem__":
        return None
    if name in _OPERATORS:
        return _OPERATORS[name], kwargs
    if kwargs.get("inplace") is True:
        return fn, dict(kwargs, inplace=False)
    if not name.endswith("_") or name.endswith("__") or name in _NOT_REWRITTEN:
        return None
    base = name[:-1]
    for owner in (torch.Tensor, torch):
        candidate = getattr(owner, base, None)
        if callable(candidate) and ltorch.is_torch_callable(candidate):
            return candidate, kwargs
    return None


def _makes_fresh_memory(bsym: BoundSymbol) -> bool:
    """Whether every output of ``bsym`` is new memory (not possibly a view of an input): in its
    decomposition, each comes from a primitive that computes (not a shape primitive or a
    same-dtype conversion), possibly through shape primitives of what such a primitive made."""
    if "opaque" in bsym.sym.tags or not bsym.flat_proxy_outputs():
        return False
    fresh: set[str] = set()
    for b in bsym.walk():
        if b.subsymbols:
            continue
        read = {p.name for p in b.flat_proxy_args() if isinstance(p, TensorProxy)}
        aliasing = b.sym.module != "prims" or b.sym.name in prims.VIEW_PRIMS or (
            b.sym.name == "convert_element_type" and b.args[0].dtype == b.output.dtype)
        for o in b.flat_proxy_outputs():
            if o.name in read:
                continue  # a leaf returning its input (a no-op reshape) makes nothing
            if not aliasing or (b.sym.module == "prims" and read <= fresh):
                fresh.add(o.name)
            else:
                fresh.discard(o.name)
    inputs = {p.name for p in bsym.flat_proxy_args()}
    return all(o.name in fresh and o.name not in inputs for o in bsym.flat_proxy_outputs())


def alias_groups(bsyms) -> Callable[[str], str]:
    """Values grouped by possible aliasing: an operation whose outputs may be views of its inputs
    (for a torch operation without a definition, running it again on fake tensors tells) joins them
    all. Returns ``root(name)``, the same name for every member of a group."""
    group: dict[str, str] = {}

    def root(name):
        while group.get(name, name) != name:
            name = group[name]
        return name

    for b in bsyms:
        if shares_memory_with_inputs(b) if "opaque" in b.sym.tags else not _makes_fresh_memory(b):
            names = [p.name for p in b.flat_proxy_args() + b.flat_proxy_outputs() if isinstance(p, TensorProxy)]
            for n in names[1:]:
                group[root(n)] = root(names[0])
    return root


def written_groups(bsyms) -> tuple[Callable[[str], str], dict]:
    """``(root, writes)``: ``root`` as ``alias_groups`` gives it, and for each alias group a write
    in place may change, the first operation writing it (empty, and no grouping done, without
    writes)."""
    writes = [b for b in bsyms if writes_a_tensor(b)]
    if not writes:
        return (lambda name: name), {}
    root = alias_groups(bsyms)
    groups: dict[str, BoundSymbol] = {}
    for b in writes:
        for p in b.flat_proxy_args():
            if isinstance(p, TensorProxy):
                groups.setdefault(root(p.name), b)
    return root, groups


def substitute(bsym: BoundSymbol, mapping: dict) -> BoundSymbol:
    """``bsym`` with the proxies named in ``mapping`` replaced (outputs too, and in its subsymbols)."""
    def swap(x):
        return mapping.get(x.name, x) if isinstance(x, Proxy) else x

    new = BoundSymbol(bsym.sym, tree_map(swap, bsym.args), tree_map(swap, bsym.kwargs),
                      tree_map(swap, bsym.output), [substitute(s, mapping) for s in bsym.subsymbols],
                      bsym.source)
    region = checkpoint.region_of(bsym)
    if region is not None:
        checkpoint.mark(new, region)
    return new


def functionalize(trace: Trace) -> Trace:
    """``trace`` with in-place operations on fresh intermediates made out of place (see above)."""
    if not any("opaque" in b.sym.tags and _mutated(b) is not None for b in trace.bound_symbols):
        return trace
    new = trace.derive("in-place operations on intermediates made out of place")
    new.bound_symbols.clear()
    inputs = {a.name for a in trace.args if isinstance(a, Proxy)}
    fresh: set[str] = set()   # values produced fresh and not viewed (safe to rewrite)
    mapping: dict[str, Proxy] = {}
    changed = False
    with tracing(new):
        for bsym in trace.bound_symbols:
            # the name the program uses for the modified value, which every later use refers to
            modified = _mutated(bsym) if "opaque" in bsym.sym.tags else None
            if mapping:
                bsym = substitute(bsym, mapping)
            if modified is not None:
                target = mapping.get(modified.name, modified)  # its newest out-of-place version
                result = _rewrite(bsym, target, new) if target.name in fresh else None
                if result is not None:
                    mapping[modified.name] = result
                    fresh.add(result.name)
                    changed = True
                    continue
            new.bound_symbols.append(bsym)
            # anything read by a symbol that may return a view of it may be aliased from now on
            if not _makes_fresh_memory(bsym):
                fresh.difference_update(p.name for p in bsym.flat_proxy_args())
            else:
                fresh.update(o.name for o in bsym.flat_proxy_outputs() if o.name not in inputs)
        new.output = tree_map(lambda x: mapping.get(x.name, x) if isinstance(x, Proxy) else x, trace.output)
    return new if changed else trace


def _mutated(bsym: BoundSymbol):
    """The tensor an in-place opaque symbol modifies (its output that is also its input), or None."""
    args = {id(p) for p in bsym.flat_proxy_args()}
    for o in bsym.flat_proxy_outputs():
        if id(o) in args and isinstance(o, TensorProxy):
            return o
    return None


def _rewrite(bsym: BoundSymbol, target: TensorProxy, trace: Trace):
    """Records the out-of-place form of ``bsym`` into ``trace`` (the current one); its result, or
    None (and nothing recorded) when it cannot be rewritten."""
    fn = SYMBOL_TO_TORCH.get(bsym.sym.id)
    replacement = _out_of_place(fn, bsym.kwargs) if fn is not None else None
    flat_args = tree_flatten(bsym.args)[0]
    if replacement is None or not flat_args or flat_args[0] is not target:
        return None
    oop, kwargs = replacement
    start = len(trace.bound_symbols)
    grad = target.requires_grad or any(isinstance(p, TensorProxy) and p.requires_grad
                                       for p in bsym.flat_proxy_args())
    try:
        with torch.set_grad_enabled(grad):
            result = ltorch.dispatch(oop, bsym.args, kwargs)
            if not isinstance(result, TensorProxy) or tuple(result.shape) != tuple(target.shape):
                raise TypeError("not an in-place result")
            if result.dtype != target.dtype:
                result = ltorch.dispatch(torch.Tensor.to, (result, target.dtype), {})
    except Exception:
        del trace.bound_symbols[start:]
        return None
    region = checkpoint.region_of(bsym)
    for b in trace.bound_symbols[start:]:
        b.source = b.source or bsym.source
        if region is not None:
            checkpoint.mark(b, region)
    return result
