"""The prologue: fetches a call's inputs for a trace and checks that the trace still applies.

During acquisition every value the program reads is located: a call argument (``args[0]``), a
module's parameter (``module._modules['fc']._parameters['weight']``), an attribute of an object
reached that way (``...config.hidden_size``), a global (``<globals of f>['SCALE']``), a closure
cell. ``PrologueBuilder`` turns those locations into a straight-line Python function:

    def prologue(args, kwargs, module):
      if len(args) != 1 or len(kwargs) != 0: return None
      x = args[0]
      if not (isinstance(x, _Tensor) and x.shape == (2, 8) and x.dtype is _c0 ...): return None
      o0 = module._modules['0']
      if type(o0) is not _c1: return None
      ...
      return (x, fc_weight, ...)

It returns the computation's inputs, or None when anything the trace depended on differs (a
tensor's shape/dtype/device/requires_grad, a Python value, an object's type). An exception while
fetching also means "does not apply". The prologue is the cache key: see ``thunder.compiled``.

The function that runs is a compacted form of the printed one (``_compact``), in which the
metadata checks of the tensors held by objects (a model's hundreds of parameters) become one call
of torch's C++ tensor guard (the one torch.compile's guards use), several times faster than the
Python checks; where that guard rejects, the Python checks decide, so it never changes a result.
The checks of Python values and objects are marked deferrable: ``Prologue.staged`` runs them in a
second step, after the computation could start (see ``thunder.compiled``).
"""

from __future__ import annotations

import linecache
import math
import re
import types
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from thunder.acquire.interpreter import Origin

_SCALARS = (bool, int, float, complex, str, type(None))


@dataclass
class _Node:
    """A located object: ``<parent><accessor>``, defined as a local ``var`` once needed."""

    obj: object
    parent: object  # a root name, a constant name, or the id of another node
    accessor: str
    var: str | None = None
    hint: str | None = None


class Prologue:
    """A built prologue: its source and the function it defines.

    ``staged`` (None when every check must come first) is the same checks as a generator of two
    steps: the first makes the checks that keep the computation's memory accesses valid (the
    tensor inputs' metadata, grad mode, the call's structure) and yields the inputs; the second
    makes the checks of Python values and objects (types, hooks, config values, functions) and
    yields True. A caller may launch the computation between the two and run the second step
    while the device works, discarding the results if it fails."""

    def __init__(self, source: str, fn, constants: dict, staged=None):
        self.source = source
        self.fn = fn
        self._constants = constants
        self.staged = staged

    def first_failing_check(self, args, kwargs, module) -> str | None:
        """The line of the prologue that rejects this call (None if it is accepted): why a call
        missed the cache."""
        lines = self.source.splitlines()
        numbered = [line.replace("return None", f"return {i}") for i, line in enumerate(lines)]
        namespace = dict(self._constants)
        exec("\n".join(numbered), namespace)
        try:
            result = namespace["prologue"](args, kwargs, module)
        except Exception as e:
            return f"an exception while fetching inputs: {type(e).__name__}: {e}"
        if not isinstance(result, int):
            return None
        line = lines[result].strip().removesuffix(": return None")
        if "_v" in line:  # a value check: say what the value is
            fetch = next((p.strip() for p in reversed(lines[:result]) if p.strip().startswith("_v = ")), None)
            line = f"{fetch}; {line}" if fetch else line
        return line

    def __str__(self) -> str:
        return self.source


class Epilogue:
    """A built epilogue: the program's attribute stores, replayed after each run."""

    def __init__(self, source: str, fn):
        self.source = source
        self.fn = fn

    def __str__(self) -> str:
        return self.source


def _accessor(kind: str, key) -> str | None:
    if kind == "attr" and isinstance(key, str) and key.isidentifier():
        return f".{key}"
    if kind in ("item", "global") and isinstance(key, (str, int)) and not isinstance(key, bool):
        return f"[{key!r}]"
    if kind == "cell":
        return ".cell_contents"
    return None


# Every tensor is an instance of torch's C base class; checking against it skips torch.Tensor's
# metaclass, about 100 ns per tensor input on every call
_TENSOR_BASE = getattr(torch._C, "TensorBase", None) or torch._C._TensorBase


class PrologueBuilder:
    def __init__(self, trace):
        self.trace = trace
        self.lines: list[str] = []
        self.constants: dict[str, object] = {"_Tensor": _TENSOR_BASE, "_tree_flatten": tree_flatten,
                                             "_is_grad_enabled": torch.is_grad_enabled}
        self._constant_ids: dict[object, str] = {}
        self._tensor_checks: dict[str, tuple[str, torch.Tensor]] = {}  # check line -> (name, example)
        self._nodes: dict[int, _Node] = {}
        self._observed: set[tuple] = set()
        self._n_vars = 0
        self._deferred: set[int] = set()  # indices of the checks a speculative call may make late

    def _deferred_check(self, line: str) -> None:
        """A check of a Python value or object (not of a tensor input's metadata): a wrong one
        makes the trace's results wrong but never its memory accesses, so ``Prologue.staged`` may
        make it after the computation was launched."""
        self._deferred.add(len(self.lines))
        self.lines.append(line)

    # -- names ----------------------------------------------------------------------------------
    def constant(self, obj) -> str:
        key = obj if isinstance(obj, (torch.device, torch.dtype)) else id(obj)  # equal devices share one
        name = self._constant_ids.get(key)
        if name is None:
            name = f"_c{len(self._constant_ids)}"
            self._constant_ids[key] = name
            self.constants[name] = obj
        return name

    def _var(self, key) -> str:
        """The local holding a located object, emitting its definition (and type guard) if new."""
        if isinstance(key, str):
            return key
        node = self._nodes[key]
        if node.var is None:
            parent = self._var(node.parent)
            node.var = f"o{self._n_vars}"
            self._n_vars += 1
            self.lines.append(f"{node.var} = {parent}{node.accessor}")
            if isinstance(node.obj, (torch.nn.Module,)) or _is_plain_object(node.obj):
                self._deferred_check(f"if type({node.var}) is not {self.constant(type(node.obj))}: return None")
        return node.var

    def _root(self, key) -> str:
        """The name a located object is reached from (``args``, ``module``, a constant)."""
        while not isinstance(key, str):
            key = self._nodes[key].parent
        return key

    def expr(self, location) -> str:
        parent, accessor = location
        return f"{self._var(parent)}{accessor}"

    # -- locating -------------------------------------------------------------------------------
    def know(self, obj, location, hint: str | None = None) -> None:
        """Records where ``obj`` can be found (the first location found wins)."""
        if id(obj) not in self._nodes:
            self._nodes[id(obj)] = _Node(obj, location[0], location[1], hint=hint)

    def know_closure(self, fn, location) -> None:
        """Locates the closure cells of a located function and guards its default arguments (the
        trace holds the defaults' values; ``f.__defaults__ = ...`` replaces them). Only such cells
        are guarded: cells of closures the program creates while it runs are new objects on every
        call."""
        if not isinstance(fn, types.FunctionType):
            return
        for attr in ("__defaults__", "__kwdefaults__"):
            if getattr(fn, attr) is not None:
                self._deferred_check(f"if {self.expr(location)}.{attr} is not "
                                     f"{self.constant(getattr(fn, attr))}: return None")
        if fn.__closure__:
            self.know(fn, location)
            for i, cell in enumerate(fn.__closure__):
                self.know(cell, (id(fn), f".__closure__[{i}]"))

    def location_of(self, obj):
        node = self._nodes.get(id(obj))
        return None if node is None else (id(obj), "")

    def hint_of(self, obj) -> str | None:
        node = self._nodes.get(id(obj))
        return None if node is None else node.hint

    def derived_location(self, origin: Origin):
        """The location of a value read as ``origin`` describes, if its base is located."""
        accessor = _accessor(origin.kind, origin.key)
        if accessor is None:
            return None
        if origin.kind == "global":
            return (self.constant(origin.base), accessor)
        if id(origin.base) in self._nodes:
            return (id(origin.base), accessor)
        return None

    # -- what the prologue checks ---------------------------------------------------------------
    def observe(self, value, origin: Origin) -> None:
        """A Python value the program read: guard scalars, locate objects for later reads."""
        location = self.derived_location(origin)
        if location is None or (location[0], location[1]) in self._observed:
            return
        self._observed.add(location)
        if isinstance(value, _SCALARS):
            self.value_guard(location, value, deferred=True)
        elif isinstance(value, types.FunctionType) or isinstance(value, types.BuiltinFunctionType) and (
                value.__self__ is None or isinstance(value.__self__, types.ModuleType)):
            # functions (not bound methods, which are new objects on every access)
            self._deferred_check(f"if {self.expr(location)} is not {self.constant(value)}: return None")
            self.know_closure(value, location)
        else:
            self.know(value, location)
            if isinstance(value, (dict, list, tuple)):
                self._deferred_check(f"if len({self.expr((id(value), ''))}) != {len(value)}: return None")
                # tensors inside are located too: handed to a torch call in the container (or a
                # copy of it), they are inputs fetched from here on every call, never constants
                for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
                    if isinstance(item, torch.Tensor) and self.location_of(item) is None:
                        hint = key if isinstance(key, str) and key.isidentifier() else f"{origin.key}_{key}"
                        self.know(item, (id(value), f"[{key!r}]"), hint=str(hint))

    def value_guard(self, location, value, deferred: bool = False) -> None:
        expr = self.expr(location)
        check = self._deferred_check if deferred else self.lines.append
        if value is None or isinstance(value, bool):
            check(f"if {expr} is not {value!r}: return None")
        elif type(value) in (int, str) or type(value) is float and math.isfinite(value):
            check(f"_v = {expr}")
            check(f"if type(_v) is not {type(value).__name__} or _v != {value!r}: return None")
        elif type(value) in (float, complex):
            check(f"_v = {expr}")
            check(f"if type(_v) is not {type(value).__name__} or not (_v == {self.constant(value)} "
                  f"or _v != _v and {self.constant(value)} != {self.constant(value)}): return None")
        elif isinstance(value, (int, float, str)):  # enums and other subclasses of scalars
            check(f"_v = {expr}")
            check(f"if type(_v) is not {self.constant(type(value))} or _v != {self.constant(value)}: return None")
        else:
            check(f"if {expr} is not {self.constant(value)}: return None")

    def item_guard(self, container, key, value, present: bool = True) -> None:
        """Requires ``container[key]`` (a located dict or list) to be ``value``, or, with
        ``present=False``, the key to be absent."""
        location = (id(container), f"[{key!r}]")
        if present:
            self.value_guard(location, value, deferred=True)
        else:
            self._deferred_check(f"if {key!r} in {self.expr((id(container), ''))}: return None")

    def tensor_input(self, value: torch.Tensor, proxy, location) -> None:
        """Fetches a tensor input and checks the metadata the trace was specialized for."""
        source = self.expr(location) if location is not None else self.constant(value)
        n = proxy.name
        self.lines.append(f"{n} = {source}")
        check = (f"isinstance({n}, _Tensor) and {n}.shape == {tuple(value.shape)!r} and "
                 f"{n}.dtype is {self.constant(value.dtype)} and {n}.device == {self.constant(value.device)} and "
                 f"{n}.requires_grad is {value.requires_grad}")
        self.lines.append(f"if not ({check}): return None")
        if location is not None and self._root(location[0]) not in ("args", "kwargs", "_leaves"):
            # parameters and other tensors held by objects: checked together at the end. Tensors
            # reached from the call's arguments are checked where they are fetched, so a call
            # that differs there (a cache entry for another length) is rejected early
            self._tensor_checks[self.lines[-1]] = (n, value, check)

    def layout_guard(self, name: str, method: str, args, kwargs, value) -> None:
        """Requires input tensor ``name``'s ``method(*args, **kwargs)`` (a layout query) to be ``value``."""
        def literal(x):
            plain = type(x) in (bool, int) or type(x) is tuple and all(type(i) is int for i in x)
            return repr(x) if plain else self.constant(x)

        call = ", ".join([*map(literal, args), *(f"{k}={literal(v)}" for k, v in kwargs.items())])
        self.lines.append(f"if {name}.{method}({call}) != {literal(value)}: return None")

    def value_check(self, check, names: list[str]) -> None:
        """Requires ``check(*those inputs)`` to hold: ``names`` are input proxies whose values
        decide a tensor value the trace was specialized on (``thunder.acquire.known_values``)."""
        self.lines.append(f"if not {self.constant(check)}({', '.join(names)}): return None")

    def grad_mode_guard(self, enabled: bool) -> None:
        """Traces record whether their outputs need gradients, so grad mode is part of the key."""
        self.lines.append(f"if _is_grad_enabled() is not {enabled}: return None")

    def number_input(self, proxy, location) -> None:
        self.lines.append(f"{proxy.name} = {self.expr(location)}")
        self.value_guard((proxy.name, ""), proxy.value)

    def structure(self, args, kwargs) -> list:
        """Checks the call's argument structure; returns the location of each flattened leaf."""
        flat, spec = tree_flatten((args, kwargs))
        if all(len(tree_flatten(a)[0]) == 1 and not isinstance(a, (tuple, list, dict))
               for a in (*args, *kwargs.values())):
            keys = ", ".join(repr(k) for k in kwargs)
            self.lines.append(f"if len(args) != {len(args)} or len(kwargs) != {len(kwargs)}: return None")
            if kwargs:
                self.lines.append(f"if tuple(kwargs) != ({keys},): return None")
            return [("args", f"[{i}]") for i in range(len(args))] + [("kwargs", f"[{k!r}]") for k in kwargs]
        self.lines.append("_leaves, _spec = _tree_flatten((args, kwargs))")
        self.lines.append(f"if _spec != {self.constant(spec)}: return None")
        return [("_leaves", f"[{i}]") for i in range(len(flat))]

    # -- the epilogue ---------------------------------------------------------------------------
    def path(self, key) -> str:
        """A self-contained expression for a located object (no locals of the prologue)."""
        if isinstance(key, str):
            return key
        node = self._nodes[key]
        return f"{self.path(node.parent)}{node.accessor}"

    def build_epilogue(self, stores) -> Epilogue:
        """A function ``epilogue(args, kwargs, module, values)`` that replays the program's
        attribute stores after the computation ran, locating each object as the prologue does.
        ``stores``: (obj, name, (leaves, spec, indices into values) or None, _, deleted)."""
        lines = []
        for obj, name, flat, _, deleted in stores:
            target = self.path(id(obj))
            if deleted:
                lines.append(f"_delattr({target}, {name!r})")
                continue
            leaves, spec, indices = flat
            items = [f"values[{i}]" if i is not None else self.constant(leaf) for leaf, i in zip(leaves, indices)]
            if spec.num_leaves == 1 and spec.num_nodes == 1:
                value = items[0]
            else:
                value = f"_tree_unflatten([{', '.join(items)}], {self.constant(spec)})"
            lines.append(f"_setattr({target}, {name!r}, {value})")
        body = ["def epilogue(args, kwargs, module, values):"]
        if any("_leaves" in line for line in lines):
            body.append("  _leaves = _tree_flatten((args, kwargs))[0]")
        body += [f"  {line}" for line in lines]
        source = "\n".join(body) + "\n"
        namespace = dict(self.constants, _setattr=setattr, _delattr=delattr, _tree_unflatten=tree_unflatten)
        return Epilogue(source, _define(source, f"<thunder epilogue {id(self)}>", namespace, "epilogue"))

    # -- output ---------------------------------------------------------------------------------
    def build(self) -> Prologue:
        """The prologue: printed one check per line (what ``last_prologue`` shows and cache-miss
        diagnosis evaluates), run from its compacted form; and, where some checks can wait, the
        staged form that ``Prologue.staged`` describes."""
        names = ", ".join(a.name for a in self.trace.args)
        inputs = f"({names}{',' if len(self.trace.args) == 1 else ''})"

        def source(lines, name="prologue"):
            return "\n".join([f"def {name}(args, kwargs, module):", *(f"  {line}" for line in lines)]) + "\n"

        namespace = dict(self.constants)
        lines = self._run_lines(namespace)
        compact = source([*_compact([line for _, line in lines]), f"return {inputs}"])
        fn = _define(compact, f"<thunder prologue {id(self)}>", namespace, "prologue")
        staged = None
        now = [line for deferred, line in lines if not deferred]
        later = [line for deferred, line in lines if deferred]
        if later:
            # two steps of one generator: the first yields the inputs, the second True once the
            # deferred checks pass (an early return ends it: StopIteration means "does not apply")
            body = _compact([*now, "# the computation may start here", *later])
            staged_source = source([f"yield {inputs}" if line.startswith("# ") else line for line in body]
                                   + ["yield True"], "staged")
            staged = _define(staged_source, f"<thunder staged prologue {id(self)}>", namespace, "staged")
        return Prologue(source([*self.lines, f"return {inputs}"]), fn, dict(self.constants), staged)

    def _run_lines(self, namespace: dict) -> list[tuple[bool, str]]:
        """The lines to run, each with whether it may be deferred. The tensor checks are replaced
        by one C++ guard over all tensors (after they are fetched, before the prologue returns),
        backed by the same checks in Python."""
        checks = self._tensor_checks
        guards = _tensor_guards([value for _, value, _ in checks.values()]) if len(checks) >= 4 else None
        if guards is None:
            checks = {}
        lines = [(i in self._deferred, line) for i, line in enumerate(self.lines) if line not in checks]
        if guards is not None:
            names = ", ".join(name for name, _, _ in checks.values())
            python = "def _python_tensor_checks({}):\n  return {}\n".format(
                names, " and ".join(f"({check})" for _, _, check in checks.values()))
            exec(python, namespace)
            namespace["_guard_tensors"] = guards.check
            lines.append((False, f"if not (_guard_tensors({names}) or _python_tensor_checks({names})): return None"))
        return lines


def _define(source: str, filename: str, namespace: dict, name: str):
    """The function ``name`` that ``source`` defines, executed in ``namespace``; registered with
    linecache so tracebacks and debuggers show its lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def _tensor_guards(examples: list):
    """torch's C++ check of tensors' dtype, device, shape, requires_grad (and dispatch keys, type)
    against ``examples``, strides left free; None where this torch has no such guard."""
    try:
        from torch._C._dynamo.guards import TensorGuards

        guards = TensorGuards(*examples, dynamic_dims_sizes=[list(t.shape) for t in examples],
                              dynamic_dims_strides=[[None] * t.ndim for t in examples])
        return guards if guards.check(*examples) else None
    except Exception:  # noqa: BLE001 - a private API: any difference means the Python checks only
        return None


_LOCAL = re.compile(r"^(o\d+) = (.+)$")
_LOCAL_NAME = re.compile(r"(?<![\w.'\"])o\d+\b(?!['\"])")  # a prologue local, not an attribute or key
_GUARD = re.compile(r"^if (.+): return None$")
_EMPTY = re.compile(r"^len\(([\w.]+(?:\['[\w.]*'\])*[\w.]*)\) != 0$")  # len(<attribute/item path>) != 0


def _compact(lines: list[str]) -> list[str]:
    """The same checks in fewer bytecodes, since every compiled call runs them: locals used once
    are inlined into their use, emptiness checks test truthiness, and consecutive guards become
    one ``if ... or ...``."""
    uses: dict[str, int] = {}
    for line in lines:
        for name in _LOCAL_NAME.findall(line):
            uses[name] = uses.get(name, 0) + 1
    inlined: dict[str, str] = {}
    out: list[str] = []
    for line in lines:
        line = _LOCAL_NAME.sub(lambda m: inlined.get(m.group(0), m.group(0)), line)
        local = _LOCAL.match(line)
        if local and uses[local.group(1)] == 2:  # its definition and one use
            inlined[local.group(1)] = local.group(2)
            continue
        guard = _GUARD.match(line)
        if guard:
            condition = guard.group(1)
            empty = _EMPTY.match(condition)
            condition = empty.group(1) if empty else condition
            previous = _GUARD.match(out[-1]) if out else None
            if previous:
                out[-1] = f"if {previous.group(1)} or {condition}: return None"
                continue
            line = f"if {condition}: return None"
        out.append(line)
    return out


def _is_plain_object(obj) -> bool:
    """Objects whose type the prologue guards (configs and the like), not containers or modules."""
    return not isinstance(obj, (type, dict, list, tuple, set, frozenset, torch.Tensor)) and hasattr(obj, "__dict__") \
        and not isinstance(obj, type(torch)) and not callable(obj)

