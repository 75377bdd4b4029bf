"""Trace passes of the plugin.

``sink_amax_records``: delayed scaling pushes each layer's amaxes into its history buffer with
``fp8.record_amax``, an in-place write, so a side effect: left where the layer is, each one cuts the
fusion executor's region in two, and a 16-layer forward becomes dozens of regions (dozens of
compiled calls, each with its own host overhead, and no fusion across them). Nothing between a
record and the end of the trace reads that history (the scales read it before the record; the
history is read only through ``amax`` over it, never through views, see ``scaling.delayed_scale``),
so each record moves down to just before the next operation that takes the same history, or the
amax it records, as an argument; usually to the end of the trace, after the one fused region. The
records that reach the end become one ``fp8.record_amaxes`` call: a few kernels for all layers
instead of two per record.
"""

from __future__ import annotations

from thunder.core.symbol import BoundSymbol

from thunder_fp8.ops import record_amax_symbol, record_amaxes_symbol


def sink_amax_records(trace):
    """``trace`` with every ``fp8.record_amax`` moved as late as it may go; None if none moved."""
    pending: list = []  # records waiting, in program order
    out: list = []
    moved = False
    for bsym in trace.bound_symbols:
        if bsym.sym.id == record_amax_symbol.id:
            pending.append(bsym)
            continue
        reads = {p.name for p in bsym.flat_proxy_args()}
        due = [r for r in pending if reads & {p.name for p in (*r.flat_proxy_args(), *r.flat_proxy_outputs())}]
        if due:
            out.extend(due)
            pending = [r for r in pending if r not in due]
        moved = moved or bool(pending)
        out.append(bsym)
    if not moved:
        return None
    if len(pending) > 1:  # the records left at the end: one batched write
        histories, rows, amaxes = zip(*(r.args for r in pending))
        pending = [BoundSymbol(record_amaxes_symbol, (histories, rows, amaxes), {}, None, [], pending[0].source)]
    return trace.derive("fp8 amax records sunk", out + pending)
