"""``thunder.examine``: what Thunder makes of a program, op by op, without running it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from thunder.core.symbol import BoundSymbol


@dataclass
class OpReport:
    op: str          # the symbol in the acquired trace (ltorch.linear, opaque.cumsum)
    kind: str        # "torch language" (decomposes into prims), "opaque" (run through torch), "primitive"
    executors: str   # which executor(s) run it after claiming (and fusing); "(decomposed)" when its
    #                  primitives were claimed one by one
    count: int


def examine(fn, *args, plugins=None, executors=None, **kwargs) -> list[OpReport]:
    """Acquires ``fn(*args, **kwargs)`` (a function or module) and reports, for each operation,
    whether it has a torch-language definition or is wrapped opaquely, and which executor will run
    it. Prints a table and returns the rows."""
    import thunder
    from thunder.executors.base import FusionExecutor, OperatorExecutor
    from thunder.executors.claim import _claim

    compiled = thunder.compile(fn, plugins=plugins, executors=executors)
    engine = thunder._compiled(compiled)
    program = thunder.compiled.acquire(engine.fn, args, kwargs, module=engine.module)
    chosen = engine.executors_for(program.computation)
    operators = [ex for ex in chosen if isinstance(ex, OperatorExecutor)]
    fusions = [ex for ex in chosen if isinstance(ex, FusionExecutor)]
    counts: Counter = Counter()
    for bsym in program.computation.bound_symbols:
        claimed = _claim(bsym, operators)
        names = sorted({_executor_of(c, fusions) for c in claimed})
        where = ", ".join(names) + ("" if _claimed_whole(bsym, claimed, operators) else " (decomposed)")
        counts[(bsym.sym.id, _kind(bsym), where)] += 1
    rows = [OpReport(op, kind, ex, n) for (op, kind, ex), n in counts.items()]
    width = max([len(r.op) for r in rows] + [2])
    print(f"{'op':<{width}}  {'count':>5}  {'kind':<14}  executor")
    for r in rows:
        print(f"{r.op:<{width}}  {r.count:>5}  {r.kind:<14}  {r.executors}")
    return rows


def _claimed_whole(bsym: BoundSymbol, claimed, operators) -> bool:
    """Whether one executor runs ``bsym`` as it is (rather than its decomposition)."""
    if len(claimed) != 1:
        return False
    tags = claimed[0].sym.tags
    name = tags[1] if len(tags) > 1 and tags[0] == "executor" else None
    return any(ex.name == name and ex.can_execute(bsym) for ex in operators)


def _kind(bsym: BoundSymbol) -> str:
    if "opaque" in bsym.sym.tags:
        return "opaque"
    return "primitive" if bsym.sym.module == "prims" else "torch language"


def _executor_of(bsym: BoundSymbol, fusions) -> str:
    """The operator executor that claimed ``bsym``, and the fusion executor that would take it
    into a fused region."""
    tags = bsym.sym.tags
    name = tags[1] if len(tags) > 1 and tags[0] == "executor" else "?"
    fused = [f.name for f in fusions if f.can_fuse(bsym)]
    return f"{name} -> {fused[0]} (fused)" if fused else name

