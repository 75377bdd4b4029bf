"""Tensor values a program reads in Python while it is traced, computed from the call's inputs.

A branch on a tensor (``if x.sum() > 0``, ``if mask.any().item()``), ``int(n)`` or ``range(n)``
of a tensor needs its value, which a trace does not have. When that value depends on the call's
inputs through a few operations (at most ``MAX_OPERATIONS``, none random, none writing in place),
acquisition computes it from the real inputs, running those operations as torch does, and the
program goes on with it; the prologue computes it again on every call and compares, so the trace
is specialized on the value: a call where it differs is traced again (a branch taken the other way
becomes a second cache entry). A value that depends on more (the model's output), on random draws
or on a write raises DataDependentError, naming why.
"""

from __future__ import annotations

import math

import torch
from torch.utils._pytree import tree_flatten, tree_map

from thunder.core.errors import DataDependentError
from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.executors.torchex import torch_executor
from thunder.transforms.autodiff.inplace import written_groups
from thunder.transforms.dce import is_identity, writes_a_tensor

MAX_OPERATIONS = 64  # more would compute a sizeable part of the program twice per call
MAX_ELEMENTS = 1024  # the prologue keeps the value to compare with


def _producers(trace, proxy: TensorProxy) -> list[BoundSymbol]:
    """The operations of ``trace`` that ``proxy``'s value is computed by, in trace order."""
    made_by = {}
    for b in trace.bound_symbols:
        if not is_identity(b):  # (a no-op ``.to`` returns its input: the value's maker is earlier)
            for o in b.flat_proxy_outputs():
                made_by[o.name] = b
    inputs = {a.name for a in trace.args if isinstance(a, Proxy)}
    cone, seen, todo = {}, set(), [proxy]
    while todo:
        p = todo.pop()
        if p.name in seen or getattr(p, "value", None) is not None:
            continue
        seen.add(p.name)
        b = made_by.get(p.name)  # an input has one only if the program writes it in place
        if b is None and p.name in inputs:
            continue
        if b is None:
            raise DataDependentError(f"the value of {p.name} is not computed from the call's inputs")
        if id(b) not in cone:
            cone[id(b)] = b
            if len(cone) > MAX_OPERATIONS:
                raise DataDependentError(
                    f"it depends on more than {MAX_OPERATIONS} operations of the program (Thunder computes a value "
                    "read in Python from the inputs again on every call only when it takes a few)")
            todo.extend(q for q in b.flat_proxy_args() if isinstance(q, TensorProxy))
    order = {id(b): i for i, b in enumerate(trace.bound_symbols)}
    return sorted(cone.values(), key=lambda b: order[id(b)])


def _check_not_written(trace, cone, proxy) -> None:
    """Rejects a value computed from a tensor the program has written in place so far, directly or
    through a view (the prologue sees the inputs as the call passes them)."""
    root, written = written_groups(trace.bound_symbols)
    for p in (proxy, *(q for b in cone for q in (*b.flat_proxy_args(), *b.flat_proxy_outputs()))):
        b = written.get(root(p.name)) if isinstance(p, TensorProxy) else None
        if b is not None:
            raise DataDependentError(f"it depends on a tensor written in place ({b.sym.module}.{b.sym.name})")


def _runnable(bsym: BoundSymbol) -> bool:
    """Whether the torch executor runs ``bsym``, or each operation it decomposes into."""
    return torch_executor.can_execute(bsym) or bool(bsym.subsymbols) and all(map(_runnable, bsym.subsymbols))


def _check_replayable(bsym: BoundSymbol) -> None:
    name = f"{bsym.sym.module}.{bsym.sym.name}"
    if any("random" in b.sym.tags for b in bsym.walk()):
        raise DataDependentError(f"it depends on random numbers ({name})")
    if writes_a_tensor(bsym):
        raise DataDependentError(f"it depends on a tensor written in place ({name})")
    if not _runnable(bsym):
        raise DataDependentError(f"it depends on {name}, which Thunder cannot run outside the trace")


def _replay(bsyms, names: list[str], values: list, target: str):
    """Runs ``bsyms`` as the torch executor does, ``names`` standing for ``values``; returns
    ``target``'s value."""
    env = dict(zip(names, values))

    def real(x):
        if isinstance(x, Proxy):
            return env[x.name] if x.name in env else x.value
        return x

    def run(b):
        if not torch_executor.can_execute(b):
            for sub in b.subsymbols:
                run(sub)
            return
        out = torch_executor.claim(b).sym.impl(*tree_map(real, b.args), **tree_map(real, b.kwargs))
        for proxy, value in zip(tree_flatten(b.output)[0], tree_flatten(out)[0]):
            if isinstance(proxy, Proxy):
                env[proxy.name] = value

    with torch.no_grad():
        for b in bsyms:
            run(b)
    return env[target]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values (NaN equal to NaN), shapes and dtypes."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.is_floating_point or a.dtype.is_complex:
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def resolve(hooks, trace, proxy: TensorProxy) -> torch.Tensor:
    """The real value of ``proxy`` for this call (see above), guarded by the prologue."""
    try:
        cone = _producers(trace, proxy)
        for b in cone:
            _check_replayable(b)
        _check_not_written(trace, cone, proxy)
        if math.prod(proxy.shape) > MAX_ELEMENTS:
            raise DataDependentError(f"it has {math.prod(proxy.shape)} elements (at most {MAX_ELEMENTS} are compared "
                                     "per call)")
    except DataDependentError as e:
        raise DataDependentError(
            f"the program uses the value of tensor {proxy.name} ({proxy.describe()}) in Python (a branch, bool(), "
            f"int(), .item() or indexing with it), but values are not known while tracing, and this one cannot be "
            f"computed from the call's inputs: {e.args[0]}. Express the choice with tensor ops (e.g. torch.where), "
            "or move it out of the compiled function") from None
    read = {q.name: q for b in cone for q in b.flat_proxy_args() if isinstance(q, Proxy)}
    read[proxy.name] = proxy  # (an input read directly)
    inputs = [a for a in trace.args if isinstance(a, Proxy) and a.name in read]
    args = [hooks.real_input(a) if isinstance(a, TensorProxy) else a.value for a in inputs]
    if any(a is None for a in args):
        raise DataDependentError(f"the value of tensor {proxy.name} depends on inputs Thunder cannot read")
    arg_names = [a.name for a in inputs]
    expected = _replay(cone, arg_names, args, proxy.name).detach().clone()

    def still(*now):
        return _same(_replay(cone, arg_names, list(now), proxy.name), expected)

    hooks.prologue.value_check(still, arg_names)
    return expected
