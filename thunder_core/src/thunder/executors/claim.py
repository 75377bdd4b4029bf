"""The claim pass: gives every bound symbol of a trace to an executor.

Operator executors are consulted in priority order for each bound symbol. The first that can run
it claims it, unless a *higher-priority* executor can run something inside its decomposition: then
the symbol is decomposed so that executor gets its part (a plugin that implements ``prims.linear``
sees the linear inside a user's ``ltorch.linear`` even though the torch executor could run the
whole op). A symbol nobody claims is decomposed; one that cannot be decomposed is an error naming
the op and the user's line. Fusion executors then claim regions of what operator executors left
to the torch executor.
"""

from __future__ import annotations

from types import SimpleNamespace

from torch.utils._pytree import tree_flatten

from thunder.core.errors import UnsupportedOpError
from thunder.core.proxies import Proxy
from thunder.core.symbol import BoundSymbol, Symbol
from thunder.core.trace import Trace
from thunder.executors.base import FusionExecutor, OperatorExecutor
from thunder.transforms.dce import is_identity


def _claim(bsym: BoundSymbol, executors: list[OperatorExecutor]) -> list[BoundSymbol]:
    if is_identity(bsym):  # inside a decomposition (a no-op ``to``): nothing to run, no region split
        return []
    for i, ex in enumerate(executors):
        if ex.can_execute(bsym):
            higher = executors[:i]
            wanted_inside = higher and any(
                h.can_execute(sub) for sub in bsym.walk() if sub is not bsym for h in higher)
            if not wanted_inside:
                return [ex.claim(bsym)]
            break
    if not bsym.subsymbols:
        where = f" (at {bsym.source[0]}:{bsym.source[1]})" if bsym.source else ""
        raise UnsupportedOpError(f"no executor can run {bsym.sym.id}{where}; executors tried: "
                                 f"{', '.join(e.name for e in executors)}")
    claimed = []
    for sub in bsym.subsymbols:
        if bsym.source is not None and sub.source is None:
            sub.source = bsym.source
        claimed.extend(_claim(sub, executors))
    return claimed


def claim_operators(trace: Trace, executors: list[OperatorExecutor]) -> Trace:
    bsyms = []
    for bsym in trace.bound_symbols:
        bsyms.extend(_claim(bsym, executors))
    return trace.derive("claimed by operator executors", bsyms)


def _region_io(region: list[BoundSymbol], later: list[BoundSymbol], trace_output) -> tuple[list, list]:
    """The proxies a region reads from outside and the ones it produces that are used after it."""
    produced: dict[str, Proxy] = {}
    inputs: dict[str, Proxy] = {}
    for b in region:
        for p in b.flat_proxy_args():
            if p.name not in produced:
                inputs.setdefault(p.name, p)
        for p in b.flat_proxy_outputs():
            produced[p.name] = p
    used_later = {p.name for b in later for p in b.flat_proxy_args()}
    used_later |= {p.name for p in tree_flatten(trace_output)[0] if isinstance(p, Proxy)}
    outputs = [p for name, p in produced.items() if name in used_later]
    return list(inputs.values()), outputs


def fuse_regions(trace: Trace, fusion: FusionExecutor) -> Trace:
    """Replaces each maximal run of fusible bound symbols with one call of a fused callable."""
    bsyms = trace.bound_symbols
    result: list[BoundSymbol] = []
    namespace = SimpleNamespace()  # what ``<executor>.<region>`` names in the executed trace
    i, count = 0, 0
    while i < len(bsyms):
        j = i
        while j < len(bsyms) and fusion.can_fuse(bsyms[j]):
            j += 1
        region = bsyms[i:j]
        if len(region) < fusion.min_region_size:
            result.append(bsyms[i])
            i += 1
            continue
        inputs, outputs = _region_io(region, bsyms[j:], trace.output)
        fn = fusion.fuse(region, inputs, outputs)
        name = f"{fusion.name}_{count}"
        count += 1
        setattr(namespace, name, fn)
        sym = Symbol(name, None, module=fusion.name, impl=fn, module_object=namespace,
                     tags=("fusion", fusion.name))
        result.append(BoundSymbol(sym, tuple(inputs), {}, tuple(outputs), list(region), region[0].source))
        i = j
    return trace.derive(f"fused by {fusion.name}", result)

