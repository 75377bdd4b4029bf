"""Acquisition: interprets a program on proxies and records what it computed and what it read.

``acquire(fn, args, kwargs, module=...)`` runs ``fn`` under the bytecode interpreter with hooks
that

- turn every tensor entering the program into a ``TensorProxy`` that becomes an input of the
  computation trace (arguments, module parameters and buffers, tensors read from globals);
- route torch callables to torch-language symbols (``thunder.torch.dispatch``) and apply plugin
  lookasides;
- record *where* each value came from (its provenance, as a Python expression rooted at the call's
  ``args``/``kwargs``/``module`` or at a captured object), and which Python values the program's
  behaviour depended on.

From that record ``PrologueBuilder`` writes the *prologue*: a Python function that, given a later
call's arguments, fetches the computation's inputs along the same paths and checks everything the
trace assumed (tensor metadata, Python values, object types). A call that passes a prologue reuses
its trace; see ``thunder.compiled``.
"""

from __future__ import annotations

import builtins
import inspect
import types

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

import thunder.torch as ltorch
from thunder.acquire.interpreter import InterpreterHooks, Origin, current_user_frames, interpret
from thunder.acquire.prologue import PrologueBuilder
from thunder.acquire.vmap import Vmapped
from thunder.core.proxies import NumberProxy, Proxy, TensorProxy
from thunder.core.trace import Trace, tracing

# modules whose Python code is run natively, never interpreted
_NATIVE_MODULE_PREFIXES = ("thunder.", "logging", "warnings", "typing", "inspect", "abc", "importlib",
                           "threading", "weakref", "torch._dynamo", "torch.utils._pytree", "torch._C",
                           "torch.overrides", "torch.utils.hooks", "torch._jit_internal", "torch.jit",
                           "torch._subclasses", "torch.fx", "torch.autograd.profiler", "torch.profiler",
                           "torch.utils._contextlib", "torch.cuda")


class AcquisitionHooks(InterpreterHooks):
    """The interpreter hooks that build the computation trace and its prologue."""

    def __init__(self, trace: Trace, prologue: PrologueBuilder, module, lookasides: dict):
        self.trace = trace
        self.prologue = prologue
        self.plugin_lookasides = lookasides
        self.proxies: dict[int, Proxy] = {}  # id(real value) -> its proxy
        self.inputs: list = []               # the real values of trace.args, in order
        if module is not None:
            self._register_module_state(module)

    # -- provenance ---------------------------------------------------------------------------
    def _register_module_state(self, module: torch.nn.Module, location=("module", ""), prefix="") -> None:
        """Every submodule, parameter and buffer is located from the root module, however the
        program reaches it (attribute, iteration over a ModuleList, ``parameters()``)."""
        if id(module) in self.prologue._nodes:
            return
        self.prologue.know(module, location)
        here = (id(module), "")
        for pname, p in module._parameters.items():
            if p is not None:
                self.prologue.know(p, (id(module), f"._parameters[{pname!r}]"), hint=prefix + pname)
        for bname, b in module._buffers.items():
            if b is not None:
                self.prologue.know(b, (id(module), f"._buffers[{bname!r}]"), hint=prefix + bname)
        for name, sub in module._modules.items():
            if sub is not None:
                self._register_module_state(sub, (here[0], f"._modules[{name!r}]"), f"{prefix}{name}_")

    def proxy_for(self, value, location, hint: str):
        """The proxy standing for real tensor ``value`` (made an input the first time)."""
        proxy = self.proxies.get(id(value))
        if proxy is None:
            proxy = TensorProxy.like(value, name=self.trace.make_name_like(hint))
            self.proxies[id(value)] = proxy
            self.inputs.append(value)  # also keeps id(value) valid
            self.trace.args.append(proxy)
            self.prologue.tensor_input(value, proxy, location)
        return proxy

    def on_load(self, value, origin: Origin):
        if isinstance(value, torch.Tensor):
            known = self.prologue.location_of(value)
            if known is None:
                known = self.prologue.derived_location(origin)
            hint = self.prologue.hint_of(value) or (origin.key if isinstance(origin.key, str) else "c")
            return self.proxy_for(value, known, hint)
        if isinstance(value, Proxy) or origin.kind in ("call", "iter", "unpack", "builtin"):
            return value
        self.prologue.observe(value, origin)
        return value

    # -- calls --------------------------------------------------------------------------------
    def lookaside(self, fn):
        replacement = self.plugin_lookasides.get(fn)
        if replacement is not None:
            return replacement
        special = _SPECIAL_LOOKASIDES.get(fn)
        if special is not None:
            return lambda *args, **kwargs: special(self, *args, **kwargs)
        if _is_hashable(fn) and ltorch.is_torch_callable(fn):
            return lambda *args, **kwargs: ltorch.dispatch(fn, args, kwargs)
        return None

    def should_interpret(self, fn) -> bool:
        module = getattr(fn, "__module__", None) or ""
        return not module.startswith(_NATIVE_MODULE_PREFIXES)


def _is_hashable(fn) -> bool:
    try:
        hash(fn)
        return True
    except TypeError:
        return False


# -- lookasides for builtins whose meaning changes with proxies ---------------------------------

def _isinstance(hooks, obj, cls):
    if isinstance(obj, TensorProxy) and _mentions(cls, torch.Tensor):
        return True
    if isinstance(obj, NumberProxy):
        return builtins.isinstance(obj.value, cls)
    return builtins.isinstance(obj, cls)


def _mentions(cls, target) -> bool:
    """Whether ``isinstance(<a target>, cls)`` holds."""
    if isinstance(cls, tuple):
        return any(_mentions(c, target) for c in cls)
    return isinstance(cls, type) and issubclass(target, cls)


def _getattr(hooks, obj, name, *default):
    try:
        value = getattr(obj, name)
    except AttributeError:
        if default:
            return default[0]
        raise
    return hooks.on_load(value, Origin("attr", obj, name))


def _type(hooks, obj, *rest):
    if rest:
        return type(obj, *rest)
    if isinstance(obj, TensorProxy):
        return torch.Tensor
    if isinstance(obj, NumberProxy):
        return obj.python_type
    return type(obj)


def _set_grad_enabled(hooks, mode: bool):
    """Grad-mode changes inside the program apply while tracing and are recorded for execution."""
    torch._C._set_grad_enabled(mode)
    ltorch.dispatch(torch._C._set_grad_enabled, (mode,), {})


def _is_compiling(hooks, *args, **kwargs):
    """Libraries (Hugging Face among them) avoid data-dependent Python under a compiler."""
    return True


def _vmap(hooks, fn, *args, **kwargs):
    return Vmapped(lambda f, f_args: interpret(f, f_args, {}, hooks), fn, *args, **kwargs)


_SPECIAL_LOOKASIDES = {
    torch.compiler.is_compiling: _is_compiling,
    torch._dynamo.is_compiling: _is_compiling,
    torch.vmap: _vmap,
    torch.func.vmap: _vmap,
    builtins.isinstance: _isinstance,
    builtins.getattr: _getattr,
    builtins.type: _type,
    torch._C._set_grad_enabled: _set_grad_enabled,
}


# -- acquisition ----------------------------------------------------------------------------------

def _signature_names(fn, args, kwargs) -> list[str]:
    """Readable names for the flattened inputs: the parameter names of ``fn``."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        names = []
        for pname, value in bound.arguments.items():
            leaves = tree_flatten(value)[0]
            names.extend([pname] if len(leaves) == 1 else [f"{pname}{i}" for i in range(len(leaves))])
        return names
    except (TypeError, ValueError):
        return [f"arg{i}" for i in range(len(tree_flatten((args, kwargs))[0]))]


class AcquiredProgram(types.SimpleNamespace):
    """What acquisition produces: ``computation`` (a Trace returning the program's flattened
    outputs), ``output_spec`` (how to rebuild the program's output from them), ``prologue``, and
    ``inputs``: the values of the computation's inputs for the call that was acquired."""


def acquire(fn, args, kwargs, *, module=None, signature_fn=None, lookasides=None) -> AcquiredProgram:
    """Interprets ``fn(*args, **kwargs)`` and returns its computation trace and prologue."""
    trace = Trace("computation")
    trace.stage = "acquired"
    trace.source_provider = _user_source
    prologue = PrologueBuilder(trace)
    hooks = AcquisitionHooks(trace, prologue, module, lookasides or {})

    prologue.grad_mode_guard(torch.is_grad_enabled())
    prologue.know_closure(fn, (prologue.constant(fn), ""))
    flat, spec = tree_flatten((args, kwargs))
    names = _signature_names(signature_fn or fn, args, kwargs)
    proxied = []
    for i, (leaf, path) in enumerate(zip(flat, prologue.structure(args, kwargs))):
        hint = names[i] if i < len(names) else f"arg{i}"
        if isinstance(leaf, torch.Tensor):
            proxied.append(hooks.proxy_for(leaf, path, hint))
        elif type(leaf) in (int, float, complex):  # bools stay bools: `flag is True` must hold
            proxy = NumberProxy(leaf, name=trace.make_name_like(hint))
            trace.args.append(proxy)
            hooks.inputs.append(leaf)
            prologue.number_input(proxy, path)
            proxied.append(proxy)
        else:
            prologue.value_guard(path, leaf)
            proxied.append(leaf)
    pargs, pkwargs = tree_unflatten(proxied, spec)

    grad_enabled = torch.is_grad_enabled()
    try:
        with tracing(trace):
            result = interpret(fn, pargs, pkwargs, hooks)
    finally:
        hooks.finished = True
        torch._C._set_grad_enabled(grad_enabled)
    flat_out, out_spec = tree_flatten(result)
    trace.output = tuple(flat_out)
    return AcquiredProgram(computation=trace, prologue=prologue.build(), output_spec=out_spec,
                           inputs=hooks.inputs)


def _user_source():
    frames = current_user_frames()
    if not frames:
        return None
    filename, lineno, _ = frames[-1]
    return (filename, lineno)
