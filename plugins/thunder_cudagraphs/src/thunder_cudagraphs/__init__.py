"""thunder-cudagraphs: replays compiled programs as CUDA graphs to remove per-kernel launch cost.

    tm = thunder.compile(model, plugins="reduce-overhead")   # or plugins=["cudagraphs"]

A final-stage trace pass (``thunder_transform_trace``, stage ``"final"``) replaces every maximal
run of capturable operations with one ``cudagraphs.region_N`` call: the whole program when
possible, otherwise the regions between operations that cannot be captured (CPU tensors, host
synchronizations, data-dependent shapes), which keep running as before; a warning names them and
why. Training works unchanged: the forward and backward traces are lowered separately, so each
gets its own graphs, joined by Thunder's autograd.Function. One graph per input signature follows
from Thunder's cache (one entry per signature, each with its own regions); see ``runner`` for the
static-buffer rules that make replays exact.

Options (``thunder.compile(..., cudagraphs_max_graphs=16)``) or constructor arguments
(``plugins=[CUDAGraphsPlugin(warmup=3)]``): see ``OPTIONS``.
"""

from __future__ import annotations

import warnings

import torch
from thunder.plugins import hookimpl

from thunder_cudagraphs.regions import capture_regions, classify, plan
from thunder_cudagraphs.runner import GraphCache, GraphRunner

__all__ = ["CUDAGraphsPlugin", "GraphRunner", "capture_regions", "classify", "plan", "OPTIONS"]

OPTIONS = {
    "cudagraphs_warmup": "calls each region runs normally before it is captured (default 2)",
    "cudagraphs_max_graphs": "captured graphs kept per compiled object, least recently used dropped (default 64)",
    "cudagraphs_max_slots": "graphs per region whose outputs may be alive at once (default 2)",
    "cudagraphs_copy_bytes": "returned outputs up to this size are copied out of the graph (default 1 MiB)",
}
_DEFAULTS = {"warmup": 2, "max_graphs": 64, "max_slots": 2, "copy_bytes": 1 << 20}


class CUDAGraphsPlugin:
    """The plugin behind the entry points ``cudagraphs`` and ``reduce-overhead``.

    ``device_type`` and ``runner`` exist for tests: with ``device_type="cpu"`` and a runner that
    just calls the region, the region planning is exercised without a GPU."""

    def __init__(self, *, warmup: int | None = None, max_graphs: int | None = None,
                 max_slots: int | None = None, copy_bytes: int | None = None,
                 device_type: str = "cuda", runner=None):
        self.settings = dict(_DEFAULTS)
        given = dict(warmup=warmup, max_graphs=max_graphs, max_slots=max_slots, copy_bytes=copy_bytes)
        self.settings.update({k: v for k, v in given.items() if v is not None})
        self.device_type = device_type
        self.runner_class = runner or GraphRunner
        self.cache = None
        self.runners: list = []  # every runner made, for inspection (tests, benchmarks)
        self._warned: set[str] = set()

    def _setting(self, options, name):
        return options.get(f"cudagraphs_{name}", self.settings[name])

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(f"thunder-cudagraphs: {message}", stacklevel=3)

    @hookimpl
    def thunder_options(self):
        return dict(OPTIONS)

    @hookimpl
    def thunder_transform_trace(self, trace, stage, options):
        if stage != "final":
            return None
        if self.device_type == "cuda" and not torch.cuda.is_available():
            self._warn("CUDA is not available, so nothing is captured; the program runs normally")
            return None
        if self.cache is None:
            self.cache = GraphCache(self._setting(options, "max_graphs"))
        warmup, slots = self._setting(options, "warmup"), self._setting(options, "max_slots")

        def make_runner(fn, info):
            runner = self.runner_class(fn, info, cache=self.cache, warmup=warmup, max_slots=slots)
            self.runners.append(runner)
            return runner

        new, outside = capture_regions(trace, make_runner, device_type=self.device_type,
                                       copy_bytes=self._setting(options, "copy_bytes"))
        if outside:
            shown = "; ".join(f"{b.sym.id} ({reason})" for b, reason in outside[:5])
            more = f"; and {len(outside) - 5} more" if len(outside) > 5 else ""
            where = ("nothing is captured, the program runs normally" if new is None else
                     "they run outside the CUDA graphs, between the captured regions")
            self._warn(f"{len(outside)} operation(s) of {trace.name} cannot be captured: {shown}{more}; {where}")
        return new
