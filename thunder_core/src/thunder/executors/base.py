"""Executors: who runs each symbol of a trace.

An ``OperatorExecutor`` claims single bound symbols it has an implementation for; a
``FusionExecutor`` claims regions of consecutive bound symbols and turns each into one callable.
Executors are ordered by ``priority`` (higher first) unless the user lists them explicitly. The
claimed trace prints each symbol as ``<executor>.<name>(...)``, or as the torch call itself for
the torch executor, so the final trace shows who runs what.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

from thunder.core.symbol import BoundSymbol, Symbol


class Executor:
    """Base of all executors. ``name`` must be a Python identifier (it prints in traces).

    ``default_devices``: when the user does not list executors, this executor is used only for
    traces on these device types (None: every device)."""

    default_devices: tuple[str, ...] | None = None

    def __init__(self, name: str, *, priority: int = 0):
        if not name.isidentifier():
            raise ValueError(f"executor name {name!r} must be a Python identifier")
        self.name = name
        self.priority = priority

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} priority={self.priority}>"


class OperatorExecutor(Executor):
    """Runs individual symbols with registered implementations.

    ``register(symbol_id, impl, checker=None, traceable=False)``: ``impl`` is called with the bound
    symbol's arguments; ``checker(*args, **kwargs) -> bool`` (called with proxies) decides per call
    whether this executor takes it, e.g. only for some dtypes. ``traceable=True`` says ``impl`` is
    made of torch operations that torch.compile can trace (aten calls, custom ops registered with
    ``torch.library``), so a fusion executor may compile it inside a region with its neighbours
    instead of cutting the region there.
    """

    def __init__(self, name: str, *, priority: int = 0):
        super().__init__(name, priority=priority)
        self.namespace = SimpleNamespace()
        self._implementations: dict[str, tuple[Symbol, Callable | None]] = {}
        self._vjps: dict[str, tuple[Callable, Callable, Callable | None]] = {}

    def register(self, symbol_id: str, impl: Callable, *, checker: Callable | None = None,
                 printed_as: tuple[str, str, object] | None = None, traceable: bool = False) -> Symbol:
        """Registers ``impl`` for the symbol named ``symbol_id`` (``"ltorch.relu"``).
        ``printed_as=(module, name, module_object)`` prints calls as ``module.name`` (e.g. the real
        torch function) instead of ``<executor>.<name>``."""
        if printed_as is None:
            attr = symbol_id.replace(".", "_")
            setattr(self.namespace, attr, impl)
            printed_as = (self.name, attr, self.namespace)
        module, name, module_object = printed_as
        tags = ("executor", self.name) + (("traceable",) if traceable else ())
        exec_sym = Symbol(name, None, module=module, impl=impl, module_object=module_object, tags=tags)
        self._implementations[symbol_id] = (exec_sym, checker)
        return exec_sym

    def can_execute(self, bsym: BoundSymbol) -> bool:
        entry = self._implementations.get(bsym.sym.id)
        if entry is None:
            return False
        checker = entry[1]
        return checker is None or bool(checker(*bsym.args, **bsym.kwargs))

    def claim(self, bsym: BoundSymbol) -> BoundSymbol:
        """``bsym`` bound to this executor's implementation. The claimed symbol's ``side_effect``,
        ``random`` and ``outside_fusion`` tags carry over (fusion executors and dead-code
        elimination read them), and an opaque torch operation's claim is tagged ``opaque`` (CSE
        never merges what it cannot see into)."""
        exec_sym = self._implementations[bsym.sym.id][0]
        tags = bsym.sym.tags + (("opaque",) if bsym.sym.module == "opaque" else ())
        missing = tuple(t for t in ("side_effect", "random", "outside_fusion", "opaque")
                        if t in tags and t not in exec_sym.tags)
        if missing:
            exec_sym.tags = (*exec_sym.tags, *missing)
        return bsym.with_symbol(exec_sym)

    def register_vjp(self, symbol_id: str, forward: Callable, backward: Callable, *,
                     checker: Callable | None = None) -> None:
        """A gradient this executor computes with its own kernels, used by autodiff instead of the
        VJP rule when the executor runs the trace and ``checker(*args, **kwargs)`` accepts the call.

        ``forward(bsym) -> (replacement, residuals)``: a bound symbol computing ``bsym``'s output
        and the residual proxies the backward needs (its output is ``(bsym.output, *residuals)``).
        ``backward(bsym, residuals, grad)``: records the backward while the backward trace is
        recorded and returns the gradients of ``bsym``'s leading positional arguments."""
        self._vjps[symbol_id] = (forward, backward, checker)

    def vjp_for(self, bsym: BoundSymbol) -> tuple[Callable, Callable] | None:
        """The (forward, backward) pair of ``register_vjp`` that applies to ``bsym``, or None."""
        entry = self._vjps.get(bsym.sym.id)
        if entry is None:
            return None
        forward, backward, checker = entry
        if checker is not None and not checker(*bsym.args, **bsym.kwargs):
            return None
        return forward, backward

    def supported_ids(self) -> list[str]:
        return list(self._implementations)


class FusionExecutor(Executor):
    """Fuses regions of consecutive claimed bound symbols into single callables.

    Subclasses implement ``can_fuse(bsym)`` (whether a symbol may join a region) and
    ``fuse(region, inputs, outputs) -> Callable`` (a callable taking ``inputs`` values and
    returning ``outputs`` values as a tuple). ``min_region_size`` avoids fusing lone ops.
    """

    min_region_size = 2

    def can_fuse(self, bsym: BoundSymbol) -> bool:
        raise NotImplementedError

    def fuse(self, region: list[BoundSymbol], inputs: list, outputs: list) -> Callable:
        raise NotImplementedError
