"""The torch.compile fusion executor: regions of the final trace compiled by Inductor.

After operator executors have claimed the trace, every maximal run of consecutive bound symbols
that the torch executor would run (and that has no side effect) becomes one region; symbols other
executors registered as ``traceable`` (the fused attention kernels) join it, so a transformer's
forward or backward is one region rather than one per layer, with one call's host overhead. The region is
printed as its own small Python function (the same code the torch executor would have run) and
compiled by Inductor, static shapes: it generates Triton kernels on GPU and C++ on CPU, fuses
elementwise work into matmul epilogues and reductions, and caches its results across processes (its
FX graph cache). Calls after the first go straight to Inductor's compiled code (``InductorRegion``),
without ``torch.compile``'s per-call guards, which only repeat the prologue's checks;
``torch.compile(fullgraph=True)`` serves what that cannot. Symbols claimed by other executors (a
plugin's kernel) stay outside regions, so they keep running where they were claimed.

By default it is used for CUDA traces only (Inductor's compile time rarely pays off for CPU
programs); ``executors=["torchcompile"]`` uses it on CPU too.
"""

from __future__ import annotations

import torch

from thunder.core.codegen import compile_trace
from thunder.core.proxies import NumberProxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace
from thunder.executors.base import FusionExecutor
from thunder.transforms.dce import draws_random, has_side_effect


class TorchCompileExecutor(FusionExecutor):
    default_devices = ("cuda",)

    def __init__(self):
        super().__init__("torchcompile", priority=100)

    def can_fuse(self, bsym: BoundSymbol) -> bool:
        """Side-effect-free symbols of the torch executor, or of an executor that registered them
        as ``traceable`` (fused attention), on tensors and numbers only: other values (the autograd
        graph handle of an opaque operation) cannot pass through a compiled graph. Random draws stay
        outside: Inductor's generator is not eager's, and a seeded program must draw eager's numbers.
        Symbols tagged ``outside_fusion`` (eager's kernel beats Inductor's lowering) stay out too."""
        tags = bsym.sym.tags
        ours = len(tags) > 1 and tags[0] == "executor" and (tags[1] == "torch" or "traceable" in tags)
        if not ours or "outside_fusion" in tags or has_side_effect(bsym) or draws_random(bsym):
            return False
        return all(isinstance(p, (TensorProxy, NumberProxy)) for p in bsym.flat_proxy_args()) and \
            all(isinstance(p, (TensorProxy, NumberProxy)) for p in bsym.flat_proxy_outputs())

    def fuse(self, region: list[BoundSymbol], inputs: list, outputs: list):
        trace = Trace("fused_region")
        trace.args = list(inputs)
        trace.bound_symbols[:] = region
        trace.output = tuple(outputs)
        fn = compile_trace(trace)
        # Shapes are fixed per trace (the prologue guards them), but a number input (a decoding
        # position) changes from call to call without a new trace: with dynamic=None Dynamo makes
        # it symbolic after the first change instead of recompiling for every value.
        numbers = any(isinstance(p, NumberProxy) for p in inputs)
        compiled = torch.compile(fn, fullgraph=True, dynamic=None if numbers else False)
        return compiled if numbers else InductorRegion(fn, compiled)


class InductorRegion:
    """A region compiled by Inductor and called without Dynamo's per-call entry.

    ``torch.compile`` evaluates its guards on every call: a check of every input tensor that the
    prologue has already made (about 0.8 ms for a 16-layer model's 118 inputs on a 2-core CPU,
    before the first kernel can launch). On the first call the region is traced to an aten graph
    (``make_fx``, fake tensors) and compiled with Inductor's ``compile_fx``; later calls go
    straight to that. ``torch.compile`` still runs the calls this cannot serve: with grad
    enabled and inputs that need it (eager autograd's fallback differentiates through the region),
    regions calling custom operators (Dynamo traces into a ``triton_op``'s kernel, an aten graph
    would call it through the dispatcher), Inductor without size asserts (which are what catch
    an input whose strides differ from the compiled ones: then this call, side-effect free by
    construction, runs again through ``torch.compile``), and any region these private entry
    points reject."""

    __slots__ = ("fn", "dynamo", "direct")

    def __init__(self, fn, dynamo):
        self.fn, self.dynamo, self.direct = fn, dynamo, None

    def __call__(self, *args):
        if self.direct is False or torch.is_grad_enabled() and any(
                isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return self.dynamo(*args)
        if self.direct is None:
            self.direct = self._compile(args)
            return self(*args)
        try:
            return self.direct(*args)
        except AssertionError:  # an input's size or stride differs from the compiled graph's
            return self.dynamo(*args)

    def _compile(self, args):
        from torch._inductor import config as inductor_config
        from torch._inductor.compile_fx import compile_fx
        from torch.fx.experimental.proxy_tensor import make_fx

        if not inductor_config.size_asserts:
            return False
        try:
            with torch.no_grad():
                graph = make_fx(self.fn, tracing_mode="fake")(*args)
                if any(isinstance(n.target, torch._ops.OpOverload) and n.target.namespace not in ("aten", "prims")
                       for n in graph.graph.nodes if n.op == "call_function"):
                    return False
                return compile_fx(graph, list(args))
        except Exception:  # noqa: BLE001 - whatever these private paths reject, torch.compile runs
            return False


torch_compile_executor = TorchCompileExecutor()
