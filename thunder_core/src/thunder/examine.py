"""``thunder.examine``: what Thunder makes of a program, op by op, without running it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from thunder.core.symbol import BoundSymbol


@dataclass
class OpReport:
    op: str          # the symbol in the acquired trace (ltorch.linear, opaque.cumsum)
    kind: str        # "torch language" (decomposes into prims) or "opaque" (run through torch)
    executors: str   # which executor(s) run it after claiming
    count: int


def examine(fn, *args, plugins=None, executors=None, **kwargs) -> list[OpReport]:
    """Acquires ``fn(*args, **kwargs)`` (a function or module) and reports, for each operation,
    whether it has a torch-language definition or is wrapped opaquely, and which executor will run
    it. Prints a table and returns the rows."""
    import thunder
    from thunder.executors.base import OperatorExecutor
    from thunder.executors.claim import _claim

    compiled = thunder.compile(fn, plugins=plugins, executors=executors)
    engine = thunder._compiled(compiled)
    program = thunder.compiled.acquire(engine.fn, args, kwargs, module=engine.module)
    operators = [ex for ex in engine.executors if isinstance(ex, OperatorExecutor)]
    counts: Counter = Counter()
    for bsym in program.computation.bound_symbols:
        claimed = _claim(bsym, operators)
        counts[(bsym.sym.id, _kind(bsym), ", ".join(sorted({_executor_of(c) for c in claimed})))] += 1
    rows = [OpReport(op, kind, ex, n) for (op, kind, ex), n in counts.items()]
    width = max([len(r.op) for r in rows] + [2])
    print(f"{'op':<{width}}  {'count':>5}  {'kind':<14}  executor")
    for r in rows:
        print(f"{r.op:<{width}}  {r.count:>5}  {r.kind:<14}  {r.executors}")
    return rows


def _kind(bsym: BoundSymbol) -> str:
    return "opaque" if "opaque" in bsym.sym.tags else "torch language"


def _executor_of(bsym: BoundSymbol) -> str:
    tags = bsym.sym.tags
    return tags[1] if len(tags) > 1 and tags[0] == "executor" else "?"

