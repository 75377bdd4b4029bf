"""Compiled callables: the cache of (prologue, computation) entries and the compile pipeline.

A call tries each cache entry's prologue (most recent first); the first that returns inputs runs
its computation (a hit). If none applies, the program is acquired again, transformed, claimed by
executors, printed and compiled, and the new entry is added (a miss). A single entry whose
computation has no effect but its results starts it as soon as the tensor inputs pass their checks
and checks the Python values while the device works (``CompiledFunction._run_speculatively``).

Pipeline of one miss (each step's trace is kept for ``thunder.last_traces``):
  acquire -> plugin passes ("acquired") -> DCE -> CSE -> attention rewrites -> autodiff split ->
  operator executors claim -> CSE -> plugin passes ("claimed") -> fusion executors -> DCE -> del
  insertion -> plugin passes ("final") -> Python source -> callable, wrapped by plugins
  (``thunder_wrap_callable``).
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass, field

import torch

from thunder.acquire.acquisition import AcquisitionFailed, acquire
from thunder.core.proxies import TensorProxy
from thunder.executors.base import Executor, FusionExecutor, OperatorExecutor
from thunder.executors.claim import claim_operators, fuse_regions
from thunder.executors.sdpa import sdpa_executor, takes_grouped_heads
from thunder.executors.torchex import torch_executor
from thunder.plugins.manager import chain, plugin_manager
from thunder.transforms.attention_bias import share_attention_biases
from thunder.transforms.autodiff import needs_grad, split_for_training, training_callable, without_grad_mode_changes
from thunder.transforms.causal_mask import use_causal_flag
from thunder.transforms.checkpoint import checkpointed_forwards
from thunder.transforms.cse import cse
from thunder.transforms.dce import dce, draws_random, has_side_effect
from thunder.transforms.deletion import DEL, insert_dels
from thunder.transforms.grouped_heads import group_repeated_heads

# options of the core itself (plugins declare theirs through thunder_options)
CORE_OPTIONS = {
    "fallback": "'eager': a call Thunder cannot trace (data-dependent control flow or shapes, an "
                "unsupported op) runs eagerly, with a FallbackWarning once, instead of raising",
    "sharp_edges": "'warn' or 'error': report programs that read mutable globals or do I/O (print, "
                   "open, time, random, logging) while acquired, which the compiled program won't repeat",
    "retrace_limit": "traces of one callable after which a call that matches none of them runs eagerly "
                     "(with a RetraceWarning naming the failing check) instead of being traced again; default "
                     "16, None for no limit",
    "checkpoint": "activation checkpointing of submodules: a module class or tuple of classes, a predicate "
                  "(qualified_name, module) -> bool, or True (children of ModuleLists); their forward's "
                  "intermediates are recomputed in the backward instead of saved",
    "speculative_prologue": "start a lone cache entry's side-effect-free computation before the prologue's "
                            "checks of Python values (which then run while the device works; a failing one "
                            "drops the results): None (default) for CUDA programs, whose kernels run "
                            "asynchronously, True for any device (no gain where the computation blocks, as on "
                            "CPU), False never",
}


class FallbackWarning(UserWarning):
    """A compiled callable ran a call eagerly (``fallback="eager"``)."""


class RetraceWarning(UserWarning):
    """A compiled callable keeps tracing its program again (a value its traces depend on changes
    from call to call)."""


CACHE_LIMIT = 64  # entries per compiled callable; the least recently added are dropped
RETRACE_WARNING = 8  # traces of one callable after which RetraceWarning says why calls miss
RETRACE_LIMIT = 16  # default retrace_limit: traces after which calls that miss run eagerly
SPECULATIVE_DEVICES = ("cuda",)  # where speculative_prologue=None speculates: kernels run asynchronously


@dataclass
class CacheEntry:
    prologue: object          # thunder.acquire.prologue.Prologue
    computation: object       # the compiled callable
    output_spec: object
    traces: list = field(default_factory=list)
    compile_seconds: float = 0.0
    backward_traces: list = field(default_factory=list)  # empty unless the entry trains
    epilogue: object = None   # replays the program's attribute stores (thunder.acquire.prologue.Epilogue)
    num_outputs: int | None = None  # the computation's outputs past these feed the epilogue
    # the computation has no effect but its results: it may start before the prologue's deferred
    # checks pass (``Prologue.staged``), its results dropped if they fail
    speculative: bool = False

    def run(self, inputs, args=(), kwargs=None, module=None):
        return self.finish(self.computation(*inputs), args, kwargs, module)

    def finish(self, flat, args=(), kwargs=None, module=None):
        """The call's result from the computation's flat outputs, after the program's attribute
        stores (the epilogue)."""
        if self.num_outputs is not None and len(flat) != self.num_outputs:
            flat, stored = flat[:self.num_outputs], flat[self.num_outputs:]
            if self.epilogue is not None:
                self.epilogue.fn(args, kwargs or {}, module, stored)
        elif self.epilogue is not None:
            self.epilogue.fn(args, kwargs or {}, module, ())
        return self.output_spec.unflatten(flat)


class CompiledFunction:
    """``thunder.compile(fn)`` for a function, and the engine behind a compiled module."""

    def __init__(self, fn, *, plugins=None, executors=None, options=None, module=None):
        self.fn = fn
        self.module = module
        self.plugin_manager = plugin_manager(plugins)
        self.options = dict(options or {})
        self._check_options()
        self.executors = self._select_executors(executors)
        self.cache: list[CacheEntry] = []
        self.hits = 0
        self.misses = 0
        self.last_entry: CacheEntry | None = None
        self._warned_fallback = False
        self._warned_limit = False
        functools.update_wrapper(self, fn, updated=())

    # -- configuration -------------------------------------------------------------------------
    def _check_options(self) -> None:
        known = dict(CORE_OPTIONS)
        for declared in self.plugin_manager.hook.thunder_options():
            known.update(declared or {})
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            listing = ", ".join(sorted(known)) or "none"
            raise TypeError(f"unknown thunder.compile option(s) {', '.join(unknown)}; options the "
                            f"loaded plugins understand: {listing}")
        limit = self.options.get("retrace_limit", RETRACE_LIMIT)
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"thunder.compile option retrace_limit={limit!r}: expected a positive int or None")
        for name, allowed in (("fallback", (None, "error", "eager")),
                              ("sharp_edges", (None, "allow", "warn", "error")),
                              ("speculative_prologue", (None, True, False))):
            if self.options.get(name) not in allowed:
                choices = ", ".join(repr(a) for a in allowed if a is not None)
                raise ValueError(f"thunder.compile option {name}={self.options[name]!r}: expected one of {choices}")

    def _select_executors(self, requested) -> list[Executor]:
        contributed = [ex for group in self.plugin_manager.hook.thunder_executors(options=self.options)
                       for ex in (group or [])]
        by_name = {ex.name: ex for ex in contributed}
        self.explicit_executors = requested is not None
        if requested is None:
            chosen = sorted(contributed, key=lambda ex: -ex.priority)
        else:
            chosen = []
            for ex in requested:
                if isinstance(ex, Executor):
                    chosen.append(ex)
                elif ex in by_name:
                    chosen.append(by_name[ex])
                else:
                    raise ValueError(f"unknown executor {ex!r}; available: {', '.join(sorted(by_name))}")
        if torch_executor not in chosen:
            chosen.append(torch_executor)  # so that every symbol can run
        return chosen

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        module = self.module
        if len(self.cache) == 1 and self.cache[0].speculative:
            hit, result = self._run_speculatively(self.cache[0], args, kwargs)
            if hit:
                return result
        else:
            for entry in self.cache:
                try:
                    inputs = entry.prologue.fn(args, kwargs, module)
                except Exception:
                    inputs = None
                if inputs is not None:
                    self.hits += 1
                    self.last_entry = entry
                    return entry.run(inputs, args, kwargs, module)
        self.misses += 1
        limit = self.options.get("retrace_limit", RETRACE_LIMIT)
        if limit is not None and self.misses > limit:
            if not self._warned_limit:
                self._warned_limit = True
                self._warn_retracing(args, kwargs, f"Calls that match none of its traces now run eagerly "
                                     f"(retrace_limit={limit}).")
            return self.fn(*args, **kwargs)
        if self.misses == RETRACE_WARNING and self.cache:
            self._warn_retracing(args, kwargs)
        try:
            entry, inputs = self._compile(args, kwargs)
        except AcquisitionFailed as failed:  # only with fallback="eager"
            entry, inputs = self._eager_entry(failed), ()
        self.cache.insert(0, entry)
        del self.cache[CACHE_LIMIT:]
        self.last_entry = entry
        # Run with the inputs acquisition found. Not through the new prologue: acquiring ran the
        # program's Python side effects (a lazily filled cache, a counter), so the prologue may
        # already reject the state the program left; the next call then acquires again.
        return entry.run(inputs, args, kwargs, module)

    def _run_speculatively(self, entry: CacheEntry, args, kwargs) -> tuple[bool, object]:
        """(hit, result) for the only cache entry, whose computation has no effect but its
        results: it starts once the tensor inputs pass their checks, and the checks of Python
        values and objects (module types and hooks, config values: most of a large model's
        prologue) run while the device works on it. If those fail, the results are dropped
        (nothing has seen them) and the call misses. Only with a single entry: with several, a
        call for another entry would run this one's computation for nothing."""
        steps = entry.prologue.staged(args, kwargs, self.module)
        try:
            inputs = next(steps, None)
        except Exception:
            return False, None
        if inputs is None:
            return False, None
        error = None
        try:
            flat = entry.computation(*inputs)
        except Exception as e:
            error = e
        try:
            applies = next(steps, False)
        except Exception:
            applies = False
        if not applies:
            return False, None  # an error of a computation that does not apply is not the program's
        self.hits += 1
        self.last_entry = entry
        if error is not None:
            raise error
        return True, entry.finish(flat, args, kwargs, self.module)

    def _warn_retracing(self, args, kwargs, consequence: str = "") -> None:
        """Names the check of the newest trace's prologue that this call fails: the value that
        keeps changing (a position counter kept as a Python int, a new object each call)."""
        reason = self.cache[0].prologue.first_failing_check(args, kwargs, self.module)
        name = getattr(self.fn, "__qualname__", "the program")
        warnings.warn(f"thunder traced {name} {len(self.cache)} times; the newest trace does not apply to this call "
                      f"because its prologue check fails: {reason}. A value checked like this that changes from "
                      "call to call traces the program again each time: pass it as a tensor, or keep it fixed."
                      + (f" {consequence}" if consequence else ""),
                      RetraceWarning, stacklevel=3)

    def _eager_entry(self, failed: AcquisitionFailed) -> CacheEntry:
        """``fallback="eager"``: a cache entry that runs the program eagerly whenever a call passes
        the checks made before acquisition stopped (such a call would stop at the same place)."""
        error = failed.error
        if not self._warned_fallback:
            self._warned_fallback = True
            notes = "\n".join(getattr(error, "__notes__", []))
            warnings.warn(f"thunder could not trace {getattr(self.fn, '__qualname__', 'the program')}, running "
                          f"it eagerly (fallback='eager'): {type(error).__name__}: {error}\n{notes}",
                          FallbackWarning, stacklevel=3)
        fn = self.fn
        entry = CacheEntry(failed.prologue, None, None, [], 0.0)
        entry.run = lambda inputs, args=(), kwargs=None, module=None: fn(*args, **(kwargs or {}))
        entry.fallback_error = error
        return entry

    # -- compiling -----------------------------------------------------------------------------
    def _compile(self, args, kwargs) -> CacheEntry:
        start = time.perf_counter()
        pm, options = self.plugin_manager, self.options
        program = pm.hook.thunder_acquire(fn=self.fn, args=args, kwargs=kwargs, module=self.module,
                                          options=options)
        if program is None:
            lookasides = {}
            for mapping in pm.hook.thunder_lookasides(options=options):
                lookasides.update(mapping or {})
            with checkpointed_forwards(self.module, options.get("checkpoint")):
                program = acquire(self.fn, args, kwargs, module=self.module, lookasides=lookasides,
                                  signature_fn=_signature_source(self.fn, self.module),
                                  sharp_edges=None if options.get("sharp_edges") == "allow"
                                  else options.get("sharp_edges"),
                                  keep_partial=options.get("fallback") == "eager")
        traces = [program.computation]
        trace = chain(pm, "thunder_transform_trace", program.computation, stage="acquired", options=options)
        traces.append(trace)
        trace = dce(trace)
        traces.append(trace)
        trace = cse(trace)
        traces.append(trace)
        trace = use_causal_flag(trace)
        traces.append(trace)
        trace = share_attention_biases(trace)
        traces.append(trace)
        executors = self.executors_for(trace)
        if sdpa_executor in executors:
            trace = dce(group_repeated_heads(trace, takes_grouped_heads))
            traces.append(trace)
        # None: no gradient needed, or eager autograd's fallback
        split = split_for_training(trace, executors)
        backward_traces = []
        if split is None:
            inference = not needs_grad(trace)
            if inference:
                trace = without_grad_mode_changes(trace)
            fn, lowered = self.lower(trace)
            if inference and any(isinstance(a, TensorProxy) and a.requires_grad for a in trace.args):
                fn = _without_grad(fn)  # so torch records no graph for what needs no gradient
            traces += lowered
        else:
            traces.append(split.forward)
            forward_fn, lowered = self.lower(split.forward)
            traces += lowered
            backward_fn, backward_lowered = self.lower(split.backward)
            backward_traces = _dedupe([split.backward, *backward_lowered])
            fn = training_callable(forward_fn, backward_fn, split)
        speculate = options.get("speculative_prologue")
        if speculate is None:
            speculate = any(isinstance(a, TensorProxy) and a.device.type in SPECULATIVE_DEVICES for a in trace.args)
        speculative = speculate and getattr(program.prologue, "staged", None) is not None \
            and _replayable(traces[-1]) and not pm.hook.thunder_wrap_callable.get_hookimpls()
        traces = _dedupe(traces)
        entry = CacheEntry(program.prologue, fn, program.output_spec, traces, time.perf_counter() - start,
                           backward_traces, getattr(program, "epilogue", None), getattr(program, "num_outputs", None),
                           speculative)
        return entry, program.inputs

    def executors_for(self, trace) -> list[Executor]:
        """The executors for a trace: all chosen ones, less (unless the user listed them) those
        whose ``default_devices`` exclude every device the trace's inputs are on."""
        if self.explicit_executors:
            return self.executors
        devices = {a.device.type for a in trace.args if isinstance(a, TensorProxy)} or {"cpu"}
        return [ex for ex in self.executors
                if ex.default_devices is None or devices & set(ex.default_devices)]

    def lower(self, trace) -> tuple:
        """Executors claim ``trace``, plugins pass over it, and it becomes a callable.
        Returns (callable, the traces of each step)."""
        pm, options = self.plugin_manager, self.options
        traces = []

        def step(t):
            traces.append(t)
            return t

        executors = self.executors_for(trace)
        operators = [ex for ex in executors if isinstance(ex, OperatorExecutor)]
        trace = step(claim_operators(trace, operators))
        trace = step(cse(trace))  # repeats that only decomposing a composite symbol revealed
        trace = step(chain(pm, "thunder_transform_trace", trace, stage="claimed", options=options))
        for fusion in (ex for ex in executors if isinstance(ex, FusionExecutor)):
            trace = step(fuse_regions(trace, fusion))
        trace = step(insert_dels(dce(trace)))
        trace = step(chain(pm, "thunder_transform_trace", trace, stage="final", options=options))
        fn = trace.python_callable()
        fn = chain(pm, "thunder_wrap_callable", fn, trace=trace, options=options)
        return fn, traces


def _replayable(trace) -> bool:
    """Whether running the final trace and dropping its results leaves no effect: no in-place
    writes, no random draws (eager's generator state), no opaque operations (code Thunder did
    not see into)."""
    return not any((has_side_effect(b) and b.sym is not DEL) or draws_random(b) or "opaque" in b.sym.tags
                   for b in trace.bound_symbols)


def _without_grad(fn):
    """Runs ``fn`` in no-grad mode: nothing it returns needs a gradient, so torch records no graph."""
    def run(*args):
        enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            return fn(*args)
        finally:
            torch._C._set_grad_enabled(enabled)

    return run


def _dedupe(traces: list) -> list:
    """Drops passes that changed nothing, so ``last_traces`` lists real steps."""
    result = [traces[0]]
    for t in traces[1:]:
        if t is not result[-1]:
            result.append(t)
    return result


def _signature_source(fn, module):
    """The function whose parameter names name the trace's inputs (a module's ``forward``)."""
    if module is not None:
        return module.forward
    return fn


# -- modules --------------------------------------------------------------------------------------

class ThunderModule:
    """Base of compiled modules. ``thunder.compile(model)`` returns a new object of a class derived
    from this and ``type(model)`` that shares ``model.__dict__`` itself: parameters, buffers,
    submodules, ``training`` and every other attribute are the original's (``state_dict``,
    ``.to()``, ``train()``/``eval()``, optimizers and assignments behave as on the original), and
    every method is the original's (Hugging Face ``generate`` too); only calling the module runs
    compiled code. The compiled engine is a class attribute, one class per compile.
    """

    _thunder_compiled: CompiledFunction

    def __call__(self, *args, **kwargs):
        return self._thunder_compiled(*args, **kwargs)


def compile_module(model: torch.nn.Module, *, plugins=None, executors=None, options=None):
    cls = type(model)
    thunder_cls = type(f"ThunderModule[{cls.__name__}]", (ThunderModule, cls), {"__module__": cls.__module__})
    compiled_module = cls.__new__(thunder_cls)
    compiled_module.__dict__ = model.__dict__
    call = functools.partial(cls.__call__, compiled_module)
    compiled = CompiledFunction(call, plugins=plugins, executors=executors, options=options,
                                module=compiled_module)
    thunder_cls._thunder_compiled = compiled
    for transformed in compiled.plugin_manager.hook.thunder_transform_module(module=compiled_module,
                                                                             options=compiled.options):
        if transformed is not None and transformed is not compiled_module:
            raise TypeError("thunder_transform_module must change the module in place (return None)")
    return compiled_module
