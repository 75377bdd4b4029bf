"""Which parts of a final trace can be captured, and the trace pass that replaces them by graphs.

A bound symbol is *capturable* when everything it reads and writes is a tensor on the capture
device and it never waits for the host (``item``, ``nonzero``, ``.cpu()``...): replaying its
kernels then does exactly what running it does. Host-only bookkeeping without tensors (grad-mode
and autocast switches, which Hugging Face models toggle around the rotary embedding) may sit inside
a region: it runs while the region is captured and, if it changed the host state, again after
each replay (see ``runner``). Everything else runs outside the graphs, between regions, as before.

The pass keeps the trace printable: each region becomes one ``cudagraphs.region_N(...)`` call
whose subsymbols (printed as comments) are the captured operations, so ``thunder.last_traces``
shows what runs inside and outside the graphs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from thunder.core.codegen import compile_trace
from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol, Symbol
from thunder.core.trace import Trace
from thunder.transforms.dce import has_side_effect
from thunder.transforms.deletion import insert_dels
from torch.utils._pytree import tree_flatten

HOST = "host"  # host-only operation that may ride inside a region
_DEL_ID = "python.del"

# operations that wait for the device or whose result size depends on tensor data
_SYNCING = {"item", "tolist", "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive",
            "bincount", "histc", "repeat_interleave", "cpu", "numpy", "_local_scalar_dense", "equal",
            "allclose", "is_nonzero", "synchronize", "__bool__", "__int__", "__float__", "__index__",
            "masked_scatter", "multinomial", "topk_dynamic", "__repr__", "__str__", "print"}
# host-side state switches that are safe inside a region (they change no tensor)
_HOST_OK = re.compile(r"grad_enabled|autocast|inference_mode|is_grad_enabled")


def _short_name(bsym: BoundSymbol) -> str:
    name = bsym.sym.name.rsplit(".", 1)[-1]
    return name[len("opaque_"):] if name.startswith("opaque_") else name


def classify(bsym: BoundSymbol, device_type: str = "cuda"):
    """None when ``bsym`` can be captured, ``HOST`` for host-only bookkeeping allowed inside a
    region, otherwise the reason (a phrase) why it must run outside the graphs."""
    if "fusion" in bsym.sym.tags:  # a fused region is capturable when everything inside it is
        for sub in bsym.subsymbols:
            reason = classify(sub, device_type)
            if reason is not None and reason != HOST:
                return reason
    args = bsym.flat_proxy_args()
    outs = bsym.flat_proxy_outputs()
    name = _short_name(bsym)
    if not args and not outs:
        if _HOST_OK.search(bsym.sym.name):
            return HOST
        if any(isinstance(a, torch.Tensor) for a in bsym.flat_args()):
            return "reads a tensor constant"
        return "changes host state" if "side_effect" in bsym.sym.tags else "runs on the host"
    if name in _SYNCING:
        return "synchronizes with the host (data-dependent value or shape)"
    for p in outs:
        if not isinstance(p, TensorProxy):
            what = p.describe() if hasattr(p, "describe") else type(p).__name__
            return f"produces a host value ({what}) from device data"
    for p in args + outs:
        if isinstance(p, TensorProxy):
            if p.device.type != device_type:
                return f"uses a {p.device.type} tensor"
        else:
            return "depends on a Python value known only when the program runs"
    return None


def generators_in(bsyms) -> list:
    """Explicit ``torch.Generator`` objects the region draws from (registered with the graph)."""
    found = []
    for bsym in bsyms:
        for sub in bsym.walk():
            for a in sub.flat_args():
                if isinstance(a, torch.Generator) and all(a is not g for g in found):
                    found.append(a)
    return found


@dataclass
class RegionInfo:
    """What a runner needs to know about its region beyond the callable."""

    name: str
    inputs: list            # proxies
    outputs: list           # proxies
    copy_out: list          # per output: return a fresh copy (small and returned by the trace)
    mutated: list           # per input: the region writes into it
    host_fn: object         # host-only operations of the region, callable with no arguments, or None
    generators: list


def _io(region, later, trace_output):
    produced, inputs = {}, {}
    for b in region:
        for p in b.flat_proxy_args():
            if p.name not in produced:
                inputs.setdefault(p.name, p)
        for p in b.flat_proxy_outputs():
            produced[p.name] = p
    used_later = {p.name for b in later for p in b.flat_proxy_args()}
    used_later |= {p.name for p in tree_flatten(trace_output)[0] if isinstance(p, Proxy)}
    return list(inputs.values()), [p for n, p in produced.items() if n in used_later]


def plan(bsyms, device_type: str = "cuda"):
    """Splits ``bsyms`` (no ``del``) into runs: ``[(kind, bsyms)]`` with kind "graph" or "eager",
    and the list of ``(bsym, reason)`` that stay outside."""
    kinds = [classify(b, device_type) for b in bsyms]
    runs, outside = [], []
    i = 0
    while i < len(bsyms):
        if kinds[i] is None or kinds[i] == HOST:
            j = i
            while j < len(bsyms) and (kinds[j] is None or kinds[j] == HOST):
                j += 1
            lo, hi = i, j
            while lo < hi and kinds[lo] == HOST:  # host-only edges run outside: nothing to gain
                lo += 1
            while hi > lo and kinds[hi - 1] == HOST:
                hi -= 1
            if lo < hi:
                if lo > i:
                    runs.append(("eager", bsyms[i:lo]))
                runs.append(("graph", bsyms[lo:hi]))
                if j > hi:
                    runs.append(("eager", bsyms[hi:j]))
            else:
                runs.append(("eager", bsyms[i:j]))
            i = j
        else:
            outside.append((bsyms[i], kinds[i]))
            runs.append(("eager", [bsyms[i]]))
            i += 1
    return runs, outside


def _nbytes(p: TensorProxy) -> int:
    n = 1
    for s in p.shape:
        n *= s
    return n * torch.empty((), dtype=p.dtype).element_size()


def _host_callable(host_bsyms):
    if not host_bsyms:
        return None
    t = Trace("host_state")
    t.bound_symbols[:] = host_bsyms
    t.output = None
    return compile_trace(t)


def capture_regions(trace: Trace, make_runner, *, device_type: str = "cuda", copy_bytes: int = 1 << 20):
    """The trace with each capturable run replaced by a call of ``make_runner(fn, info)``.
    Returns (new trace or None when nothing can be captured, [(bsym, reason) left outside])."""
    bsyms = []
    for b in trace.bound_symbols:
        if b.sym.id == _DEL_ID:
            continue
        if ("fusion" in b.sym.tags and classify(b, device_type) is not None
                and any(classify(sub, device_type) is None for sub in b.subsymbols)):
            # a fused region mixing capturable and host work (e.g. ending in ``.cpu()``) runs as
            # its separate operations, so that its device part can still be captured
            bsyms.extend(b.subsymbols)
        else:
            bsyms.append(b)
    runs, outside = plan(bsyms, device_type)
    if not any(kind == "graph" for kind, _ in runs):
        return None, outside
    returned = {p.name for p in tree_flatten(trace.output)[0] if isinstance(p, Proxy)}
    namespace = SimpleNamespace()
    result: list[BoundSymbol] = []
    count = 0
    flat_runs = [b for _, run in runs for b in run]
    position = 0
    for kind, run in runs:
        position += len(run)
        if kind == "eager":
            result.extend(run)
            continue
        inputs, outputs = _io(run, flat_runs[position:], trace.output)
        name = f"region_{count}"
        count += 1
        sub = Trace(name)
        sub.args = list(inputs)
        sub.bound_symbols[:] = run
        sub.output = tuple(outputs)
        fn = compile_trace(insert_dels(sub))  # intermediates freed at last use: the graph pool reuses them
        written = {p.name for b in run if has_side_effect(b) for p in b.flat_proxy_args()}
        info = RegionInfo(
            name=name, inputs=inputs, outputs=outputs,
            copy_out=[p.name in returned and _nbytes(p) <= copy_bytes for p in outputs],
            mutated=[p.name in written for p in inputs],
            host_fn=_host_callable([b for b in run if not b.flat_proxy_args() and not b.flat_proxy_outputs()]),
            generators=generators_in(run))
        runner = make_runner(fn, info)
        setattr(namespace, name, runner)
        sym = Symbol(name, None, module="cudagraphs", impl=runner, module_object=namespace,
                     tags=("fusion", "cudagraphs"))
        result.append(BoundSymbol(sym, tuple(inputs), {}, tuple(outputs), list(run), run[0].source))
    new = insert_dels(trace.derive("captured in CUDA graphs", result))
    new.stage = "captured in CUDA graphs, with del of dead values"
    return new, outside
