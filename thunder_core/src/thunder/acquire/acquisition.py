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
import logging
import os
import random
import time
import types
import warnings

import torch
import torch.utils.checkpoint
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

import thunder.torch as ltorch
from thunder.acquire import known_values
from thunder.acquire.autocast import AutocastState
from thunder.acquire.interpreter import AcquisitionError, InterpreterHooks, Origin, current_user_frames, interpret
from thunder.acquire.outputs import flatten_result
from thunder.acquire.prologue import PrologueBuilder
from thunder.acquire.vmap import Vmapped
from thunder.core.errors import UnsupportedOpError
from thunder.core.proxies import NumberProxy, Proxy, TensorProxy
from thunder.core.trace import Trace, tracing
from thunder.torch import checks, opaque

# modules whose Python code is run natively, never interpreted
_NATIVE_MODULE_PREFIXES = ("thunder.", "logging", "warnings", "typing", "inspect", "abc", "importlib",
                           "threading", "weakref", "torch._dynamo", "torch.utils._pytree", "torch._C",
                           "torch.overrides", "torch.utils.hooks", "torch._jit_internal", "torch.jit",
                           "torch._subclasses", "torch.fx", "torch.autograd.profiler", "torch.profiler",
                           "torch.utils._contextlib", "torch.cuda")


class AcquisitionHooks(InterpreterHooks):
    """The interpreter hooks that build the computation trace and its prologue."""

    def __init__(self, trace: Trace, prologue: PrologueBuilder, module, lookasides: dict,
                 sharp_edges: str | None = None):
        self.trace = trace
        self.prologue = prologue
        self.plugin_lookasides = lookasides
        self.proxies: dict[int, Proxy] = {}  # id(real value) -> its proxy
        self.inputs: list = []               # the real values of trace.args, in order
        # attribute stores to objects that outlive the call: (id(obj), name) -> (obj, name, value),
        # in the order of their last store; replayed by the epilogue, seen by later reads
        self.stores: dict[tuple, tuple] = {}
        # item stores into dicts and lists that outlive the call: (id, key) -> (container, key,
        # value before the program's first store); see ``settle_item_stores``
        self.item_journal: dict[tuple, tuple] = {}
        self.autocast = AutocastState()
        self.autocast_lookasides = self.autocast.lookasides()
        self.sharp_edges = sharp_edges
        self._reported: set = set()
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

    def real_input(self, proxy):
        """The real tensor an input proxy stands for, or None (not a tensor input of the trace)."""
        if isinstance(proxy, TensorProxy):
            return next((v for v in self.inputs if self.proxies.get(id(v)) is proxy), None)
        return None

    def on_load(self, value, origin: Origin):
        if origin.kind == "attr" and self.stores:
            stored = self.stores.get((id(origin.base), origin.key))
            if stored is not None:  # the program reads back what it assigned (not the old value)
                if stored[2] is _DELETED:
                    raise AttributeError(f"{type(origin.base).__name__!r} object has no attribute {origin.key!r}")
                return stored[2]
        if origin.kind == "global" and self.sharp_edges is not None:
            self._check_global(value, origin)
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

    # -- side effects -------------------------------------------------------------------------
    def store_attr(self, obj, name, value) -> None:
        """Stores to objects the prologue can locate (the module, its submodules, configs,
        arguments, globals) outlive the call: they are deferred to the epilogue, which replays them
        after the computation on every call, and later reads in the program see the new value.
        Stores to objects the program made are ordinary Python."""
        if self.prologue.location_of(obj) is None:
            setattr(obj, name, value)
            return
        if isinstance(obj, torch.nn.Module) and isinstance(value, torch.nn.Module):
            raise UnsupportedOpError(f"assigning a submodule ({type(obj).__name__}.{name}) inside the compiled "
                                     "program is not supported: assign it before calling the compiled module")
        key = (id(obj), name)
        self.stores.pop(key, None)
        self.stores[key] = (obj, name, value)

    def missing_attr(self, obj, name):
        stored = self.stores.get((id(obj), name))
        if stored is None or stored[2] is _DELETED:
            return NotImplemented
        return stored[2]

    def delete_attr(self, obj, name) -> None:
        if self.prologue.location_of(obj) is None:
            delattr(obj, name)
            return
        key = (id(obj), name)
        if not hasattr(obj, name) and key not in self.stores:
            raise AttributeError(name)
        self.stores.pop(key, None)
        self.stores[key] = (obj, name, _DELETED)

    def store_item(self, container, key, value) -> None:
        self._journal(container, key)
        container[key] = value

    def delete_item(self, container, key) -> None:
        self._journal(container, key)
        del container[key]

    def _journal(self, container, key) -> None:
        """Item stores run as Python runs them (later reads in the program see them), but into a
        dict or list that outlives the call (a module's ``_parameters``) they may put proxies
        there: the value before the first store is kept to be put back."""
        if type(container) not in (dict, list) or type(key) not in (str, int) or \
                self.prologue.location_of(container) is None:
            return
        journal_key = (id(container), key)
        if journal_key not in self.item_journal:
            self.item_journal[journal_key] = (container, key, _item(container, key))

    def settle_item_stores(self) -> str | None:
        """After the program: every journaled item holds its value from before the call again.
        A store the program undid itself (``torch.func.functional_call`` swapping parameters in
        and back) had no lasting effect. A lasting store of a Python value stays as Python did it,
        and the prologue then requires the value from before the call: the trace holds what the
        program computed from that state, so a later call (which finds the new value: a counter,
        a cache filled on the first call) traces again and stores again, as eager would. Returns
        a description of a lasting store of a traced value (which Thunder cannot replay on later
        calls), or None."""
        lasting = None
        for container, key, before in reversed(list(self.item_journal.values())):
            after = _item(container, key)
            undone = after is before or (isinstance(after, Proxy) and self.proxies.get(id(before)) is after)
            traced = any(isinstance(x, Proxy) for x in tree_flatten(after)[0])
            if not (undone or traced):
                self.prologue.item_guard(container, key, None if before is _DELETED else before,
                                         present=before is not _DELETED)
                continue
            if before is _DELETED:
                container.pop(key, None)
            else:
                container[key] = before
            if not undone:
                lasting = f"{self.prologue.path(id(container))}[{key!r}]"
        self.item_journal.clear()
        return lasting

    # -- sharp edges ----------------------------------------------------------------------------
    def _sharp_edge(self, what: str, key) -> None:
        frames = current_user_frames()
        where = ""
        if frames:
            filename, lineno, _ = frames[-1]
            where = f" at {filename}:{lineno}"
            key = (key, filename, lineno)
        if key in self._reported:
            return
        self._reported.add(key)
        message = (f"{what}{where}. The compiled program does not repeat it on later calls (the trace keeps "
                   "only tensor operations; Python values it read are checked by the prologue at best).")
        if self.sharp_edges == "error":
            raise SharpEdgeError(message)
        warnings.warn(message, SharpEdgeWarning, stacklevel=2)

    def _check_global(self, value, origin) -> None:
        module = origin.base.get("__name__", "") if isinstance(origin.base, dict) else ""
        if _is_stable_global(value) or module == "torch" or module.startswith("torch."):
            return  # (torch's own module state, such as its global hook registries, is its business)
        self._sharp_edge(f"the program reads the mutable global {origin.key!r} (a {type(value).__name__}), "
                         "whose contents may change between calls", ("global", origin.key))

    # -- calls --------------------------------------------------------------------------------
    def lookaside(self, fn):
        method = getattr(fn, "tensor_method", None)  # ``x.stride()`` on a proxy (see TensorProxy)
        if method in _LAYOUT_QUERIES:
            return lambda *args, **kwargs: _layout_query(self, method, fn.receiver, *args, **kwargs)
        replacement = self.plugin_lookasides.get(fn)
        if replacement is not None:
            return replacement
        if type(fn) is torch.jit.ScriptFunction and getattr(fn, "_torchdynamo_inline", None) is not None:
            # a @torch.jit.script function (DeBERTa's helpers): its Python source is interpreted
            return lambda *args, **kwargs: interpret(fn._torchdynamo_inline, args, kwargs, self)
        if not _is_hashable(fn):
            return None
        special = _SPECIAL_LOOKASIDES.get(fn)
        if special is not None:
            return lambda *args, **kwargs: special(self, *args, **kwargs)
        simulated = self.autocast_lookasides.get(fn)
        if simulated is not None:
            return simulated
        if self.sharp_edges is not None and _is_io(fn):
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
            self._sharp_edge(f"the program calls {name}() (input/output, time or randomness outside torch)",
                             ("io", name))
        if _is_autograd_function_apply(fn):
            # a user's torch.autograd.Function: one opaque operation, run (and differentiated
            # with the user's backward) by torch
            return lambda *args, **kwargs: ltorch.opaque_call(fn, *self._known_tensors_as_inputs((args, kwargs)))
        if ltorch.is_torch_callable(fn):
            return lambda *args, **kwargs: ltorch.dispatch(fn, *self._known_tensors_as_inputs((args, kwargs)))
        return None

    def _known_tensors_as_inputs(self, call):
        """Real tensors a torch call receives inside containers the program did not index (an
        LSTM's list of flat weights handed to the kernel whole) become trace inputs like tensors the
        program loads: fetched from where they live (parameters, buffers, attributes) on every call,
        or, made while tracing by code outside torch, held as that object."""
        def as_input(x):
            if isinstance(x, torch.Tensor):
                return self.proxy_for(x, self.prologue.location_of(x), self.prologue.hint_of(x) or "c")
            return x

        return tree_map(as_input, call)

    def should_interpret(self, fn) -> bool:
        module = getattr(fn, "__module__", None) or ""
        return not module.startswith(_NATIVE_MODULE_PREFIXES)


class SharpEdgeError(AcquisitionError):
    """With ``sharp_edges="error"``: the program relies on Python state or I/O that a compiled
    program does not reproduce."""


class SharpEdgeWarning(UserWarning):
    """With ``sharp_edges="warn"``: see ``SharpEdgeError``."""


_DELETED = object()  # what the epilogue replays for ``del obj.name``

_IO_FUNCTIONS = {print, open, input, time.time, time.perf_counter, time.monotonic, time.time_ns, time.sleep,
                 os.urandom, os.getenv}
_IO_MODULES = ("random", "logging", "numpy.random", "secrets")


def _is_io(fn) -> bool:
    """Callables whose effect or result lies outside the trace: I/O, clocks, Python's RNGs."""
    if fn in _IO_FUNCTIONS:
        return True
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, (random.Random, logging.Logger)) or owner is logging:
        return True
    module = getattr(fn, "__module__", None) or ""
    return module in _IO_MODULES or module.startswith("logging.")


def _item(container, key):
    """``container[key]`` of a dict or list, ``_DELETED`` for a key a dict does not have."""
    return container.get(key, _DELETED) if type(container) is dict else container[key]


def _is_autograd_function_apply(fn) -> bool:
    """``MyFunction.apply`` of a ``torch.autograd.Function`` subclass."""
    owner = getattr(fn, "__self__", None)
    return (isinstance(fn, types.MethodType) and isinstance(owner, type) and owner is not torch.autograd.Function
            and issubclass(owner, torch.autograd.Function) and fn.__func__ is torch.autograd.Function.apply.__func__)


def _is_stable_global(value) -> bool:
    """Globals the trace can rely on: modules, functions, classes, and constants the prologue
    guards by value. Containers and plain objects are mutable state."""
    if isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
                          types.MethodType, torch.dtype, torch.device, torch.Tensor, torch.nn.Module, logging.Logger,
                          bool, int, float, complex, str, bytes, type(None), frozenset)) or callable(value):
        return True
    if isinstance(value, tuple):
        return all(_is_stable_global(v) for v in value)
    import enum

    return isinstance(value, enum.Enum)


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
        stored = hooks.missing_attr(obj, name)
        if stored is not NotImplemented:
            return stored
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


def _embedding(hooks, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
               sparse=False):
    """``F.embedding`` with ``max_norm`` first rescales, in place and without gradient, the weight
    rows it is about to look up (as eager does): recorded as that in-place write, then the lookup."""
    if max_norm is not None:
        enabled = torch.is_grad_enabled()
        _set_grad_enabled(hooks, False)
        ltorch.dispatch(torch.embedding_renorm_, (weight, input, max_norm, norm_type), {})
        _set_grad_enabled(hooks, enabled)
    return ltorch.dispatch(torch.nn.functional.embedding,
                           (input, weight, padding_idx, None, norm_type, scale_grad_by_freq, sparse), {})


def _is_all_true(hooks, condition):
    """``if not torch._is_all_true(valid): raise ...`` is how torch validates values (every
    torch.distributions argument and sample): recorded as a check the program makes when it runs,
    and taken to hold while tracing (a failing check raises then, as eager does)."""
    if not isinstance(condition, TensorProxy):
        return torch._is_all_true(condition)
    ltorch.dispatch(checks.assert_all_true, (condition,), {})
    return True


def _is_compiling(hooks, *args, **kwargs):
    """Libraries (Hugging Face among them) avoid data-dependent Python under a compiler."""
    return True


def _hasattr(hooks, obj, name):
    stored = hooks.stores.get((id(obj), name))
    if stored is not None:
        return stored[2] is not _DELETED
    return hasattr(obj, name)


def _setattr(hooks, obj, name, value):
    hooks.store_attr(obj, name, value)


def _delattr(hooks, obj, name):
    hooks.delete_attr(obj, name)


def _vmap(hooks, fn, *args, **kwargs):
    return Vmapped(lambda f, f_args: interpret(f, f_args, {}, hooks), fn, *args, **kwargs)


def _checkpoint(hooks, function, *args, **kwargs):
    """``torch.utils.checkpoint.checkpoint``: ``function`` interpreted inline, its operations marked
    for recomputation in the backward (``thunder.transforms.checkpoint``)."""
    from thunder.transforms.checkpoint import interpret_checkpointed

    return interpret_checkpointed(hooks.trace, lambda f, a, k: interpret(f, a, k, hooks), function, args, kwargs)


def _compiler_hint(hooks, *args, **kwargs):
    """torch.compile's hints on tensors (``mark_static_address``, ``mark_dynamic``): nothing to do
    for a trace, whose shapes are specialized and whose inputs are fetched on every call."""
    return None


def _autograd_call(hooks, *args, **kwargs):
    """``torch.autograd.grad`` / ``backward`` inside the program (``loss.backward()`` on a traced
    tensor ends in the same error, raised where opaque operations are made)."""
    raise opaque.autograd_inside_error()


def _layout_query(hooks, method, tensor, *args, **kwargs):
    """``x.is_contiguous()``, ``x.stride()``, ``x.storage_offset()``: a trace's tensors have no
    layout, but the tensors a call receives do, and programs branch on it. For an input tensor the
    answer is the real one, guarded by the prologue (another layout is another trace); for a value
    the program computes, torch's answer for a freshly computed tensor (contiguous), as the trace
    makes it."""
    real = hooks.real_input(tensor)
    if real is None:
        return ltorch.dispatch(method, (tensor, *args), kwargs)
    value = method(real, *args, **kwargs)
    hooks.prologue.layout_guard(tensor.name, method.__name__, args, kwargs, value)
    return value


def _causal_hint(hooks, mask, is_causal=None, size=None):
    """``nn.Transformer*`` ask whether a mask is causal by comparing its values, only to pass
    ``is_causal`` on as a hint; the mask is applied either way, with the same result. The values
    are not known while tracing, so the answer is the caller's hint alone."""
    return is_causal is True


def _layout_lookaside(method):
    return lambda hooks, tensor, *args, **kwargs: _layout_query(hooks, method, tensor, *args, **kwargs)


_LAYOUT_QUERIES = {torch.Tensor.is_contiguous, torch.Tensor.stride, torch.Tensor.storage_offset}
_SPECIAL_LOOKASIDES = {
    torch.nn.functional.embedding: _embedding,
    **{m: _layout_lookaside(m) for m in _LAYOUT_QUERIES},
    torch.autograd.backward: _autograd_call,
    torch.autograd.grad: _autograd_call,
    torch.utils.checkpoint.checkpoint: _checkpoint,
    torch.compiler.is_compiling: _is_compiling,
    torch._is_all_true: _is_all_true,
    torch._dynamo.is_compiling: _is_compiling,
    torch.vmap: _vmap,
    torch.func.vmap: _vmap,
    builtins.isinstance: _isinstance,
    builtins.getattr: _getattr,
    builtins.hasattr: _hasattr,
    builtins.setattr: _setattr,
    builtins.delattr: _delattr,
    builtins.type: _type,
    torch._C._set_grad_enabled: _set_grad_enabled,
    **{hint: _compiler_hint for hint in (getattr(torch._dynamo, name, None) for name in (
        "mark_static_address", "mark_dynamic", "maybe_mark_dynamic", "mark_static", "mark_unbacked"))
       if hint is not None},
}
if hasattr(torch.nn.modules.transformer, "_detect_is_causal_mask"):  # torch >= 2.1
    _SPECIAL_LOOKASIDES[torch.nn.modules.transformer._detect_is_causal_mask] = _causal_hint


# -- acquisition ----------------------------------------------------------------------------------

def _signature_names(fn, args, kwargs) -> list[str]:
    """Readable names for the flattened ``(args, kwargs)``, in their order: the parameter names of
    ``fn`` for positional arguments, the keys for keyword arguments."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    rest = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), "arg")
    named = [(positional[i] if i < len(positional) else f"{rest}{i - len(positional)}", a) for i, a in enumerate(args)]
    names = []
    for base, value in named + list(kwargs.items()):
        count = len(tree_flatten(value)[0])
        names.extend([base] if count == 1 else [f"{base}{i}" for i in range(count)])
    return names


class AcquiredProgram(types.SimpleNamespace):
    """What acquisition produces: ``computation`` (a Trace returning the program's flattened
    outputs, then the tensors the epilogue stores), ``output_spec`` (how to rebuild the program's
    output from the first ``num_outputs`` of them), ``prologue``, ``epilogue`` (None when the
    program assigned no attribute of a lasting object), and ``inputs``: the values of the
    computation's inputs for the call that was acquired."""


class AcquisitionFailed(Exception):
    """Raised by ``acquire`` with ``keep_partial=True``: ``error`` is what stopped acquisition and
    ``prologue`` checks everything the program read before it, so a later call that passes it
    would stop at the same place (``thunder.compile(..., fallback="eager")`` caches that)."""

    def __init__(self, error, prologue):
        super().__init__(str(error))
        self.error = error
        self.prologue = prologue


def acquire(fn, args, kwargs, *, module=None, signature_fn=None, lookasides=None, sharp_edges=None,
            keep_partial=False) -> AcquiredProgram:
    """Interprets ``fn(*args, **kwargs)`` and returns its computation trace, prologue and epilogue."""
    trace = Trace("computation")
    trace.stage = "acquired"
    trace.source_provider = _user_source
    prologue = PrologueBuilder(trace)
    hooks = AcquisitionHooks(trace, prologue, module, lookasides or {}, sharp_edges)
    trace.top_level_call_hook = hooks.autocast.rewrite_call
    trace.resolve_value = lambda proxy: known_values.resolve(hooks, trace, proxy)

    prologue.grad_mode_guard(torch.is_grad_enabled())
    hooks.autocast.prologue_guard(prologue)
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
            if not isinstance(leaf, (bool, int, float, complex, str, type(None))):
                prologue.know(leaf, path)  # its attributes are located (and assignable) through it
            proxied.append(leaf)
    pargs, pkwargs = tree_unflatten(proxied, spec)

    grad_enabled = torch.is_grad_enabled()
    try:
        with tracing(trace):
            result = interpret(fn, pargs, pkwargs, hooks)
    except AcquisitionError as e:
        if keep_partial:
            raise AcquisitionFailed(e, prologue.build()) from e
        raise
    finally:
        hooks.finished = True
        trace.top_level_call_hook = trace.resolve_value = None
        torch._C._set_grad_enabled(grad_enabled)
        lasting_item_store = hooks.settle_item_stores()
    if lasting_item_store is not None:
        raise UnsupportedOpError(
            f"the program stores a traced value into {lasting_item_store}, a container that outlives the "
            "call; Thunder replays attribute stores on such objects but not item stores. Assign an attribute "
            "instead, return the value, or move the store out of the compiled function.")
    flat_out, out_spec = flatten_result(result)
    stored_tensors, epilogue = _epilogue(hooks, prologue)
    trace.output = tuple(flat_out) + tuple(stored_tensors)
    return AcquiredProgram(computation=trace, prologue=prologue.build(), output_spec=out_spec,
                           inputs=hooks.inputs, epilogue=epilogue, num_outputs=len(flat_out))


def _epilogue(hooks, prologue):
    """The epilogue replaying the program's stores: (the proxies it needs from the computation,
    the built epilogue or None)."""
    if not hooks.stores:
        return [], None
    values: list = []
    stores = []
    for obj, name, value in hooks.stores.values():
        if value is _DELETED:
            stores.append((obj, name, None, None, True))
            continue
        leaves, spec = tree_flatten(value)
        indices = []
        for leaf in leaves:
            if isinstance(leaf, Proxy):
                indices.append(len(values))
                values.append(leaf)
            else:
                indices.append(None)
        stores.append((obj, name, (leaves, spec, indices), None, False))
    return values, prologue.build_epilogue(stores)


def _user_source():
    frames = current_user_frames()
    if not frames:
        return None
    filename, lineno, _ = frames[-1]
    return (filename, lineno)
