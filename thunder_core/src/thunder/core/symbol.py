"""Symbols and bound symbols: the vocabulary of traces.

A ``Symbol`` is an operation. A *primitive* symbol (``prims``) has a meta function that computes
its outputs' metadata; any other symbol has a Python definition in terms of other symbols (its
decomposition), which is run on proxies and recorded as the bound symbol's subsymbols. An
executor's version of an operation is a symbol with an ``impl``: the callable that really runs.

Calling a symbol while a trace is recorded appends a ``BoundSymbol``: the symbol, its arguments,
its output and (for non-primitives) its subsymbols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch.utils._pytree import tree_flatten

from thunder.core.proxies import Proxy
from thunder.core.trace import current_trace


class Symbol:
    """An operation that can appear in a trace.

    name:      the name it prints under, after ``module`` (``prims.add``, ``ltorch.linear``)
    fn:        what runs when it is called on proxies: the meta function of a primitive, the
               decomposition of anything else
    is_prim:   primitives record no subsymbols
    impl:      for executor symbols, the callable the executed trace calls
    module:    the printed prefix; ``module_object`` is what that prefix names when the trace runs
    printer:   for Python statements (``del``): prints the bound symbol's line instead of a call
    """

    __slots__ = ("name", "fn", "is_prim", "impl", "module", "module_object", "tags", "printer",
                 "__weakref__")

    def __init__(self, name: str, fn: Callable | None, *, module: str, is_prim: bool = False,
                 impl: Callable | None = None, module_object: object = None, tags: tuple = (),
                 printer: Callable | None = None):
        self.name = name
        self.fn = fn
        self.is_prim = is_prim
        self.impl = impl
        self.module = module
        self.module_object = module_object
        self.tags = tags
        self.printer = printer

    @property
    def id(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<Symbol {self.id}>"

    def __call__(self, *args, **kwargs):
        trace = current_trace()
        top_level = trace.recording_top_level
        if top_level and getattr(trace, "top_level_call_hook", None) is not None:
            # acquisition rewrites calls made under a region's policy (autocast casts)
            args, kwargs = trace.top_level_call_hook(self, args, kwargs)
        with trace.scope() as subsymbols:
            output = self.fn(*args, **kwargs)
        source = trace.source_provider() if top_level and trace.source_provider else None
        trace.record(BoundSymbol(self, args, kwargs, output,
                                 [] if self.is_prim else subsymbols, source))
        return output


@dataclass(eq=False)
class BoundSymbol:
    """One call of a symbol in a trace."""

    sym: Symbol
    args: tuple
    kwargs: dict
    output: object
    subsymbols: list = field(default_factory=list)
    # (filename, lineno, source text) of the user's code that made this call, when known
    source: tuple | None = None

    def flat_args(self) -> list:
        return tree_flatten((self.args, self.kwargs))[0]

    def flat_proxy_args(self) -> list[Proxy]:
        return [a for a in self.flat_args() if isinstance(a, Proxy)]

    def flat_outputs(self) -> list:
        return tree_flatten(self.output)[0]

    def flat_proxy_outputs(self) -> list[Proxy]:
        return [o for o in self.flat_outputs() if isinstance(o, Proxy)]

    def with_symbol(self, sym: Symbol, *, subsymbols: list | None = None) -> BoundSymbol:
        """The same call, bound to another symbol (an executor's implementation)."""
        return BoundSymbol(sym, self.args, self.kwargs, self.output,
                           self.subsymbols if subsymbols is None else subsymbols, self.source)

    def walk(self):
        """This bound symbol and, recursively, its subsymbols."""
        yield self
        for sub in self.subsymbols:
            yield from sub.walk()
