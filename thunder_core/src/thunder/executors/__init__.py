"""Executors and the claim pass. ``available()`` lists the executors of the installed plugins."""

from thunder.executors.base import Executor, FusionExecutor, OperatorExecutor

__all__ = ["Executor", "FusionExecutor", "OperatorExecutor", "available"]


def available(plugins=None) -> list[Executor]:
    """The executors that ``thunder.compile(..., plugins=plugins)`` would use, highest priority
    first (the torch executor last)."""
    from thunder.compiled import CompiledFunction

    return CompiledFunction(lambda: None, plugins=plugins).executors
