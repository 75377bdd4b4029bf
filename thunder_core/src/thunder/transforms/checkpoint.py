"""Activation checkpointing: regions of the forward whose intermediates the backward recomputes.

Two ways to mark a region, one mechanism:

- ``torch.utils.checkpoint.checkpoint(fn, *args)`` in the user's program (also Hugging Face's
  ``gradient_checkpointing_enable()``): acquisition interprets ``fn(*args)`` inline (no torch
  checkpoint machinery runs) and marks what it records (``interpret_checkpointed``);
- ``thunder.compile(model, checkpoint=...)``: the forward of every selected submodule is a region.
  ``checkpoint`` is a module class or a tuple of classes (``checkpoint=litgpt.model.Block``), a
  predicate ``(qualified_name, module) -> bool``, or ``True`` for every direct child of
  ``ModuleList``s (the usual transformer blocks).

Marked bound symbols are remembered here (``region_of``). Autodiff keeps the mark on the symbols
it writes for them, and rematerialization then saves only what enters each region (so also what
leaves one region for the next): each value that the backward needs from inside a region is
recomputed there, from the region's inputs, with the region's operations only. Random
operations (dropout) and operations run through torch's autograd (batch norm, which updates
running statistics) are never run twice: their outputs are saved as usual, so the masks are the
forward's.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import weakref

import torch
import torch.utils.checkpoint

# bound symbols whose outputs the backward recomputes -> the region they belong to
_MARKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_regions = itertools.count()


def mark(bsym, region_id: int) -> None:
    _MARKED[bsym] = region_id


def region_of(bsym) -> int | None:
    """The checkpointed region ``bsym`` belongs to, or None."""
    return _MARKED.get(bsym)


@contextlib.contextmanager
def region(trace):
    """Marks the top-level bound symbols recorded into ``trace`` within the block as one region
    (a region nested in another becomes part of it)."""
    start = len(trace.bound_symbols)
    region_id = next(_regions)
    try:
        yield
    finally:
        for bsym in trace.bound_symbols[start:]:
            mark(bsym, region_id)


def interpret_checkpointed(trace, interpret, function, args, kwargs):
    """What acquisition does for ``torch.utils.checkpoint.checkpoint(function, *args, **kwargs)``:
    interprets ``function`` inline inside a marked region. ``interpret(fn, args, kwargs)`` runs a
    callable under acquisition's interpreter."""
    for option in ("use_reentrant", "context_fn", "determinism_check", "debug", "preserve_rng_state"):
        kwargs.pop(option, None)
    with region(trace):
        return interpret(function, args, kwargs)


def _selector(spec):
    if spec is None or spec is False:
        return None
    if spec is True:
        return lambda name, module, parent: isinstance(parent, torch.nn.ModuleList)
    if isinstance(spec, type) or (isinstance(spec, tuple) and all(isinstance(c, type) for c in spec)):
        return lambda name, module, parent: isinstance(module, spec)
    if callable(spec):
        return lambda name, module, parent: bool(spec(name, module))
    raise TypeError("checkpoint= expects a module class, a tuple of classes, a predicate "
                    f"(qualified_name, module) -> bool, or True; got {spec!r}")


def selected_modules(root: torch.nn.Module, spec) -> list[torch.nn.Module]:
    """The submodules of ``root`` that ``checkpoint=spec`` selects (outermost only)."""
    select = _selector(spec)
    if select is None or root is None:
        return []
    chosen = []

    def visit(module, prefix):
        for name, child in module.named_children():
            qualified = f"{prefix}{name}"
            if select(qualified, child, module):
                chosen.append(child)
            else:
                visit(child, qualified + ".")

    visit(root, "")
    return chosen


@contextlib.contextmanager
def checkpointed_forwards(root, spec):
    """While acquiring: the selected submodules' ``forward`` goes through
    ``torch.utils.checkpoint.checkpoint`` (which acquisition turns into a marked region). The
    instance attribute is removed afterwards: the modules are as before, eager calls unaffected."""
    patched = []
    try:
        for module in selected_modules(root, spec):
            if "forward" in module.__dict__:
                continue  # the user set an instance forward: leave it alone
            # a partial: the interpreter takes it apart and meets the checkpoint call
            module.forward = functools.partial(torch.utils.checkpoint.checkpoint,
                                               type(module).forward.__get__(module), use_reentrant=False)
            patched.append(module)
        yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)
