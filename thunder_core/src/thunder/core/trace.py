"""Traces: straight-line programs of bound symbols, and the context that records them.

A ``Trace`` is a named function: its inputs (proxies), a list of ``BoundSymbol`` (each one call of
a ``Symbol`` with its arguments and outputs), and an output structure. While a trace is being
recorded it is the *current trace*: calling a symbol appends a bound symbol to it, and a symbol's
decomposition is recorded into a nested scope that becomes the bound symbol's subsymbols.

Printing (``str(trace)``) gives valid Python, and ``trace.python_callable()`` executes exactly
that printed source: see ``thunder.core.codegen``.
"""

from __future__ import annotations

import contextvars
import re
from contextlib import contextmanager
from typing import Callable

_CURRENT_TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("thunder_trace", default=None)


def current_trace() -> Trace:
    trace = _CURRENT_TRACE.get()
    if trace is None:
        raise RuntimeError("a Thunder symbol or proxy was used outside of tracing")
    return trace


def is_tracing() -> bool:
    return _CURRENT_TRACE.get() is not None


@contextmanager
def tracing(trace: Trace):
    token = _CURRENT_TRACE.set(trace)
    try:
        yield trace
    finally:
        _CURRENT_TRACE.reset(token)


class Trace:
    """A straight-line program over proxies."""

    def __init__(self, name: str = "computation", *, names: set[str] | None = None):
        self.name = name
        self.args: list = []
        self.bound_symbols: list = []
        self.output = None
        self.stage = ""  # which pass produced it, printed in the header
        self._names: set[str] = set() if names is None else names
        self._counters: dict[str, int] = {}
        self._scopes: list[list] = [self.bound_symbols]
        # returns "file:line" source information for the operation being recorded (set by acquisition)
        self.source_provider: Callable[[], tuple | None] | None = None
        # tensors whose values are known while tracing -> the tensor whose memory they are
        # (see thunder.torch.constant_value)
        self.known_values: dict = {}

    # -- names --------------------------------------------------------------------------------
    def make_name(self, prefix: str = "t") -> str:
        n = self._counters.get(prefix, 0)
        while f"{prefix}{n}" in self._names:
            n += 1
        self._counters[prefix] = n + 1
        name = f"{prefix}{n}"
        self._names.add(name)
        return name

    def make_name_like(self, hint: str) -> str:
        """A fresh name that reads like ``hint`` (a user's argument or parameter name)."""
        base = re.sub(r"\W", "_", hint).strip("_") or "x"
        if base[0].isdigit():
            base = "_" + base
        if base in self._names or base in _RESERVED or re.fullmatch(r"[a-z]\d+", base):
            return self.make_name(base + "_")
        self._names.add(base)
        return base

    # -- recording ----------------------------------------------------------------------------
    def record(self, bsym) -> None:
        self._scopes[-1].append(bsym)

    @property
    def recording_top_level(self) -> bool:
        return len(self._scopes) == 1

    @contextmanager
    def scope(self):
        """Records into a fresh list (a symbol's decomposition) for the duration of the block."""
        self._scopes.append([])
        try:
            yield self._scopes[-1]
        finally:
            self._scopes.pop()

    def derive(self, stage: str, bound_symbols: list | None = None) -> Trace:
        """A new trace with the same signature and names, for a pass to fill in."""
        t = Trace(self.name, names=set(self._names))
        t._counters = dict(self._counters)
        t.args = list(self.args)
        t.output = self.output
        t.stage = stage
        if bound_symbols is not None:
            t.bound_symbols[:] = bound_symbols
        return t

    # -- printing and executing ---------------------------------------------------------------
    def python(self) -> str:
        from thunder.core.codegen import trace_to_python

        return trace_to_python(self)[0]

    def python_callable(self) -> Callable:
        from thunder.core.codegen import compile_trace

        return compile_trace(self)

    def __str__(self) -> str:
        return self.python()

    __repr__ = __str__


_RESERVED = {"torch", "prims", "ltorch", "self", "def", "return", "del", "None", "True", "False",
             "lambda", "class", "import", "from", "in", "is", "not", "and", "or", "if", "else",
             "for", "while", "with", "as", "pass", "global", "nonlocal", "yield", "try", "except",
             "finally", "raise", "assert", "break", "continue", "elif", "async", "await", "input",
             "slice", "float", "int", "bool", "complex", "tuple", "list", "dict", "range",
             # the parameters of generated prologues, epilogues and traces
             "args", "kwargs", "module", "values", "prologue", "epilogue", "computation", "backward"}
