"""``del`` insertion: frees each intermediate right after its last use, as eager would."""

from __future__ import annotations

from torch.utils._pytree import tree_flatten

from thunder.core.proxies import Proxy
from thunder.core.symbol import BoundSymbol, Symbol
from thunder.core.trace import Trace


def _print_del(bsym: BoundSymbol, printer) -> str:
    return "del " + ", ".join(p.name for p in bsym.args)


DEL = Symbol("del", None, module="python", printer=_print_del, tags=("side_effect",))


def insert_dels(trace: Trace) -> Trace:
    keep = {p.name for p in tree_flatten(trace.output)[0] if isinstance(p, Proxy)}
    seen: set[str] = set(keep)
    result: list[BoundSymbol] = []
    for bsym in reversed(trace.bound_symbols):
        dead = []
        for p in bsym.flat_proxy_args() + bsym.flat_proxy_outputs():
            if p.name not in seen:
                seen.add(p.name)
                dead.append(p)
        if dead:
            result.append(BoundSymbol(DEL, tuple(dead), {}, None))
        result.append(bsym)
    result.reverse()
    return trace.derive("with del of dead values", result)
