"""The torch.compile fusion executor: regions of the final trace compiled by Inductor.

After operator executors have claimed the trace, every maximal run of consecutive bound symbols
that the torch executor would run (and that has no side effect) becomes one region; symbols other
executors registered as ``traceable`` (the fused attention kernels) join it, so a transformer's
forward or backward is one region rather than one per layer, with one call's host overhead. The region is
printed as its own small Python function (the same code the torch executor would have run) and
compiled with ``torch.compile(fullgraph=True)``, static shapes: Inductor generates Triton kernels
on GPU and C++ on CPU, fuses elementwise work into matmul epilogues and reductions, and caches its
results across processes (its FX graph cache). Symbols claimed by other executors (a plugin's
kernel) stay outside regions, so they keep running where they were claimed.

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
        return torch.compile(fn, fullgraph=True, dynamic=None if numbers else False)


torch_compile_executor = TorchCompileExecutor()
