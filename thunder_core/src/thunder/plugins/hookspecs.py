"""Hook specifications of the ``thunder`` pluggy project, grouped by the stage they serve.

A plugin is any object with methods named like the hooks below and marked with
``@thunder.plugins.hookimpl``; it implements the ones it needs. Plugins are found by name in the
``thunder.plugins`` entry-point group (``thunder.compile(m, plugins=["fp8"])``) or passed as
objects (``plugins=[MyPlugin(option=1)]``). Each ``thunder.compile`` call gets its own plugin
manager holding the built-in plugin (``thunder.plugins.builtin``: the torch executor) and the
requested plugins, so the core has no private door: its executors arrive through these hooks too.

``options`` is the dict of keyword options given to ``thunder.compile`` beyond ``plugins`` and
``executors``; every option must be declared by some plugin's ``thunder_options``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("thunder")
hookimpl = pluggy.HookimplMarker("thunder")


# -- configuration --------------------------------------------------------------------------------

@hookspec
def thunder_options() -> dict:
    """Declares the compile options this plugin understands: ``{name: one-line description}``.
    ``thunder.compile`` rejects options that no plugin declares."""


# -- acquisition ----------------------------------------------------------------------------------

@hookspec(firstresult=True)
def thunder_acquire(fn, args, kwargs, module, options):
    """Replaces acquisition: return a ``thunder.acquire.acquisition.AcquiredProgram`` for ``fn(*args,
    **kwargs)``, or None to let the next plugin (ultimately the bytecode interpreter) do it."""


@hookspec
def thunder_lookasides(options) -> dict:
    """Returns ``{callable: replacement}``: while the program is interpreted, calls of
    ``callable`` run ``replacement`` natively instead. This is also how a plugin adds torch
    operations: map a torch callable to a new ``thunder.core.symbol.Symbol`` (or a function calling
    symbols) and ship an executor that claims that symbol."""


# -- transformation -------------------------------------------------------------------------------

@hookspec
def thunder_transform_module(module, options):
    """Before acquisition of a compiled ``nn.Module``: change it in place (shard, quantize, swap
    layers, register state) and return None. ``module`` is the compiled module, which shares
    parameters and submodules with the user's model. Runs once per compile."""


@hookspec
def thunder_transform_trace(trace, stage: str, options):
    """A trace pass. ``stage`` names where the trace stands: ``"acquired"`` (torch-language ops,
    before executors), ``"claimed"`` (after operator executors claimed symbols, before fusion),
    ``"final"`` (what will run). Return a new trace, or None to keep it. Plugins run in
    registration order, each seeing the previous one's result."""


@hookspec
def thunder_wrap_callable(fn, trace, options):
    """Wraps the executed computation (e.g. CUDA-graph capture): return a callable with ``fn``'s
    signature, or None. Wrappers chain in registration order."""


# -- executors ------------------------------------------------------------------------------------

@hookspec
def thunder_executors(options) -> list:
    """Returns the executors (``thunder.executors.OperatorExecutor`` / ``FusionExecutor``) this
    plugin contributes. Unless the user lists ``executors=`` explicitly, all contributed executors
    are used, highest ``priority`` first; the torch executor (lowest) can run everything."""
