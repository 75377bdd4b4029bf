"""Thunder: a source-to-source compiler for PyTorch programs.

    tm = thunder.compile(model)                 # an nn.Module or a function
    tm = thunder.compile(model, plugins=["fp8"])
    print(thunder.last_traces(tm)[-1])          # the Python program that ran

The public surface is this module: ``compile``/``jit``, ``last_traces``, ``last_backward_traces``, ``last_prologue``,
``cache_hits``/``cache_misses``, ``examine``; ``thunder.plugins.available()`` lists plugins.
"""

from __future__ import annotations

from torch.nn import Module

import thunder.torch  # noqa: F401  (registers the torch language; note: thunder.torch shadows torch here)
from thunder.acquire.acquisition import SharpEdgeError, SharpEdgeWarning
from thunder.compiled import CompiledFunction, FallbackWarning, RetraceWarning, ThunderModule, compile_module
from thunder.core.errors import DataDependentError, InvalidArgumentError, UnsupportedOpError
from thunder.examine import examine

__all__ = ["compile", "jit", "last_traces", "last_backward_traces", "last_prologue", "cache_hits", "cache_misses",
           "examine", "UnsupportedOpError", "DataDependentError", "InvalidArgumentError", "SharpEdgeError",
           "SharpEdgeWarning", "FallbackWarning", "RetraceWarning"]
__version__ = "0.1.0"


def compile(fn, *, plugins=None, executors=None, **options):
    """Compiles ``fn`` (a function or an ``nn.Module``).

    plugins:   names of installed plugins (entry points in ``thunder.plugins``), plugin objects or
               classes, or one name (``plugins="reduce-overhead"``)
    executors: executor names or objects in priority order (default: every executor the plugins
               contribute, by priority); the torch executor is always last
    options:   options declared by the loaded plugins, and the core's:
               fallback="eager"   a call that cannot be traced (data-dependent control flow or
                                  shapes, an unsupported op) runs eagerly with a FallbackWarning
                                  (once) instead of raising; later calls that take the same path
                                  run eagerly without re-tracing
               sharp_edges="warn"|"error"  report reads of mutable globals and I/O (print, open,
                                  time, random, logging) during acquisition: the compiled program
                                  does not repeat them
               speculative_prologue=True|False  start a lone cache entry's side-effect-free
                                  computation before checking Python values (default: for CUDA
                                  programs, whose kernels run while those checks do)
    """
    if isinstance(fn, Module):
        return compile_module(fn, plugins=plugins, executors=executors, options=options)
    if not callable(fn):
        raise TypeError(f"thunder.compile expects a function or an nn.Module, got {type(fn).__name__}")
    return CompiledFunction(fn, plugins=plugins, executors=executors, options=options)


jit = compile


def _compiled(obj) -> CompiledFunction:
    if isinstance(obj, CompiledFunction):
        return obj
    if isinstance(obj, ThunderModule):
        return obj._thunder_compiled
    raise TypeError(f"expected a function or module returned by thunder.compile, got {type(obj).__name__}")


def last_traces(obj) -> list:
    """The traces of the most recently run cache entry, from acquisition to the executed one."""
    entry = _compiled(obj).last_entry
    if entry is None:
        raise RuntimeError("the compiled object has not been called yet")
    return entry.traces


def last_prologue(obj) -> str:
    """The source of the prologue (input fetching and cache checks) of the last run entry."""
    entry = _compiled(obj).last_entry
    if entry is None:
        raise RuntimeError("the compiled object has not been called yet")
    return entry.prologue.source


def last_backward_traces(obj) -> list:
    """The backward traces of the most recently run cache entry (empty when it built no backward:
    no output needed a gradient), from the one autodiff recorded to the executed one."""
    entry = _compiled(obj).last_entry
    if entry is None:
        raise RuntimeError("the compiled object has not been called yet")
    return entry.backward_traces


def cache_hits(obj) -> int:
    return _compiled(obj).hits


def cache_misses(obj) -> int:
    return _compiled(obj).misses
