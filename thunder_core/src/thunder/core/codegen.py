"""Printing traces as Python source, and executing exactly that source.

Every bound symbol prints as one assignment ``out = module.name(args)`` commented with its
outputs' metadata; a comment line with the user's source line precedes each group of operations
that came from it. Values that have no literal form (a module object, a custom class) become
named constants in the globals the source is executed with. What ``str(trace)`` shows is what
``compile_trace`` executes.
"""

from __future__ import annotations

import linecache
import math
import os

import torch

from thunder.core.proxies import NumberProxy, Proxy, TensorProxy


class _Printer:
    """Turns Python values into source text, collecting the globals that text needs."""

    def __init__(self):
        self.globals: dict[str, object] = {"torch": torch}
        self._constant_names: dict[int, str] = {}

    def constant(self, value) -> str:
        name = self._constant_names.get(id(value))
        if name is None:
            name = f"_c{len(self._constant_names)}"
            self._constant_names[id(value)] = name
            self.globals[name] = value
        return name

    def value(self, x) -> str:
        if isinstance(x, Proxy):
            return x.name
        if x is None or x is Ellipsis or isinstance(x, (bool, str)):
            return "..." if x is Ellipsis else repr(x)
        if isinstance(x, int):
            return repr(x)
        if isinstance(x, float):
            return repr(x) if math.isfinite(x) else f"float('{x}')"
        if isinstance(x, complex):
            return f"complex({self.value(x.real)}, {self.value(x.imag)})"
        if isinstance(x, torch.dtype):
            return str(x)
        if isinstance(x, torch.device):
            return f"torch.device({str(x)!r})"
        if isinstance(x, torch.Size):
            return f"torch.Size({self.value(list(x))})"
        if isinstance(x, slice):
            return f"slice({self.value(x.start)}, {self.value(x.stop)}, {self.value(x.step)})"
        if type(x) is tuple:
            inner = ", ".join(self.value(e) for e in x)
            return f"({inner},)" if len(x) == 1 else f"({inner})"
        if type(x) is list:
            return f"[{', '.join(self.value(e) for e in x)}]"
        if type(x) is dict and all(isinstance(k, str) for k in x):
            return "{" + ", ".join(f"{k!r}: {self.value(v)}" for k, v in x.items()) + "}"
        return self.constant(x)

    def target(self, out) -> str | None:
        """The left-hand side that binds a symbol's output, or None when it binds nothing."""
        if isinstance(out, Proxy):
            return out.name
        if isinstance(out, (tuple, list)) and out:
            parts = [self.target(o) or "_" for o in out]
            if all(p == "_" for p in parts):
                return None
            return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
        return None

    def call(self, bsym) -> str:
        sym = bsym.sym
        if sym.printer is not None:
            return sym.printer(bsym, self)
        root = sym.module.split(".")[0]
        if root not in self.globals:
            self.globals[root] = sym.module_object
        args = [self.value(a) for a in bsym.args]
        args += [f"{k}={self.value(v)}" for k, v in bsym.kwargs.items()]
        call = f"{sym.module}.{sym.name}({', '.join(args)})"
        target = self.target(bsym.output)
        return call if target is None else f"{target} = {call}"


def describe(x) -> str:
    """The metadata comment for a value."""
    if isinstance(x, (TensorProxy, NumberProxy)):
        return x.describe()
    return type(x).__name__


def _source_comment(source) -> str:
    filename, lineno = source[0], source[1]
    text = linecache.getline(filename, lineno).strip()
    return f"# {os.path.basename(filename)}:{lineno}  {text}"


def _body_lines(bound_symbols, printer: _Printer, indent: str) -> list[str]:
    lines = []
    last_source = None
    for bsym in bound_symbols:
        if bsym.source is not None and bsym.source != last_source:
            lines.append(indent + _source_comment(bsym.source))
            last_source = bsym.source
        line = indent + printer.call(bsym)
        outs = [o for o in bsym.flat_proxy_outputs()]
        if outs and bsym.sym.printer is None:
            line += "  # " + ", ".join(f"{o.name}: {describe(o)}" for o in outs)
        lines.append(line)
        if bsym.sym.tags and "fusion" in bsym.sym.tags:
            lines.extend(indent + "#   " + printer.call(sub) for sub in bsym.subsymbols)
    return lines


def trace_to_python(trace) -> tuple[str, dict]:
    """The source of ``trace`` and the globals it must be executed with."""
    printer = _Printer()
    signature = ", ".join(a.name for a in trace.args)
    lines = []
    if trace.stage:
        lines.append(f"# {trace.name}: {trace.stage}")
    lines.append(f"def {trace.name}({signature}):")
    lines.extend(f"  # {a.name}: {describe(a)}" for a in trace.args)
    lines.extend(_body_lines(trace.bound_symbols, printer, "  "))
    lines.append(f"  return {printer.value(trace.output)}")
    return "\n".join(lines) + "\n", printer.globals


_compile_counter = [0]


def compile_trace(trace):
    """Executes the printed source of ``trace`` and returns the function it defines."""
    source, globals_ = trace_to_python(trace)
    _compile_counter[0] += 1
    filename = f"<thunder {trace.name} {_compile_counter[0]}>"
    # registered with linecache so tracebacks through the trace show its source lines
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), globals_)
    fn = globals_[trace.name]
    fn.__thunder_source__ = source
    return fn
