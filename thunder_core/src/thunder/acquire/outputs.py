"""A program's result as trace outputs, and its rebuilding on each call.

The result is flattened with torch's pytree (tuples, lists, dicts, namedtuples, Hugging Face
``ModelOutput``...): its tensors become the trace's outputs, everything else is a constant of the
entry. Objects pytree does not know are leaves to it, so a returned dataclass (or a plain object)
holding traced tensors would hand its caller the object acquisition built, proxies inside. Such
objects are taken apart here: a dataclass by its fields, another object by the attributes that
hold traced values, and each call rebuilds a shallow copy of the traced object with that call's
values. An object that holds traced values Thunder cannot reach (a closure over one) is an error
naming its type, never a leak.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from thunder.core.errors import UnsupportedOpError
from thunder.core.proxies import Proxy


class OutputSpec:
    """How to rebuild a result from the trace's flat outputs: torch's ``TreeSpec`` of the result,
    and for each of its leaves either None (one output value) or the ``_Object`` it stands for."""

    def __init__(self, tree, objects):
        self.tree, self.objects = tree, objects
        self.num_values = sum(1 if o is None else o.num_values for o in objects)
        self.values_only = all(o is None for o in objects)  # the flat outputs are the leaves
        self.bare = self.values_only and tree.num_nodes == 1  # the result is one value

    def rebuild(self, flat):
        """``(result, number of values of flat used)``."""
        leaves, used = [], 0
        for obj in self.objects:
            if obj is None:
                leaves.append(flat[used])
                used += 1
            else:
                leaves.append(obj.rebuild(flat[used:used + obj.num_values]))
                used += obj.num_values
        if self.tree.num_nodes == 1:  # a bare value
            return leaves[0], used
        return tree_unflatten(leaves, self.tree), used

    def unflatten(self, flat):
        if self.bare:  # the common cases first: each call of a small program pays for this
            return flat[0]
        if self.values_only:
            return tree_unflatten(list(flat[:self.num_values]), self.tree)
        return self.rebuild(flat)[0]


class _Object:
    """A returned object taken apart: its attributes ``names``, each with its own spec; rebuilt as
    a shallow copy of ``template``, the traced object."""

    def __init__(self, template, names, specs):
        self.template, self.names, self.specs = template, names, specs
        self.num_values = sum(spec.num_values for spec in specs)

    def rebuild(self, flat):
        obj = copy.copy(self.template)
        used = 0
        for name, spec in zip(self.names, self.specs):
            value, n = spec.rebuild(flat[used:])
            used += n
            object.__setattr__(obj, name, value)  # frozen dataclasses too
        return obj


def _is_leaf(x) -> bool:
    return isinstance(x, torch.Size)  # one value (pytree would take it apart and rebuild a plain tuple)


def _holds_traced(x, seen: set) -> bool:
    if isinstance(x, Proxy):
        return True
    if id(x) in seen or isinstance(x, (str, bytes, int, float, bool, type(None), torch.Tensor, torch.nn.Module)):
        return False
    seen.add(id(x))
    leaves = tree_flatten(x, is_leaf=_is_leaf)[0]
    if len(leaves) != 1 or leaves[0] is not x:
        return any(_holds_traced(leaf, seen) for leaf in leaves)
    cells = getattr(x, "__closure__", None) or ()  # a returned closure over a traced value
    return any(_holds_traced(v, seen) for v in _attributes(x).values()) or \
        any(_holds_traced(c.cell_contents, seen) for c in cells if c.cell_contents is not c)


def _attributes(obj) -> dict:
    """A dataclass's fields; another object's instance attributes (``__dict__`` and slots)."""
    if isinstance(obj, type):
        return {}
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    attributes = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                attributes[name] = getattr(obj, name)
    return attributes


def flatten_result(result, _enclosing: tuple = ()):
    """``(values, spec)``: the result's flat values (proxies and constants, the trace's outputs) and
    the ``OutputSpec`` that rebuilds it from them."""
    leaves, tree = tree_flatten(result, is_leaf=_is_leaf)
    values, objects = [], []
    for leaf in leaves:
        if isinstance(leaf, Proxy) or not _holds_traced(leaf, set()):
            values.append(leaf)
            objects.append(None)
            continue
        attributes = _attributes(leaf)
        names = tuple(n for n, v in attributes.items() if _holds_traced(v, set()))
        if not names or any(leaf is e for e in _enclosing):  # (an object holding itself has no copy)
            raise UnsupportedOpError(
                f"the program returns a {type(leaf).__qualname__} holding traced tensors where Thunder cannot "
                "rebuild it with each call's values (a closure over them, or the object inside itself); return the "
                "tensors (in tuples, lists, dicts, dataclasses or objects) instead")
        specs = []
        for name in names:
            sub_values, sub_spec = flatten_result(attributes[name], (*_enclosing, leaf))
            values += sub_values
            specs.append(sub_spec)
        objects.append(_Object(leaf, names, specs))
    return values, OutputSpec(tree, objects)
