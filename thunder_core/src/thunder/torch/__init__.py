"""The torch language: torch operations as symbols defined in terms of primitives.

Importing this package registers every torch-language symbol (``ltorch.*``) and fills the
tables that map torch callables and Tensor methods to them. ``dispatch`` is what acquisition calls
for a torch callable: the registered symbol if there is one, otherwise an opaque symbol
(``thunder.torch.opaque``), so every torch operation can be traced.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from thunder.core import proxies
from thunder.core.trace import current_trace
from thunder.torch import checks, creation, elementwise, nn, opaque, random, reduction, shape  # noqa: F401  (registers)
from thunder.torch.opaque import is_inplace, opaque_call
from thunder.torch.registry import ALL, SYMBOL_TO_TORCH, TORCH_TO_SYMBOL, namespace

__all__ = ["ALL", "SYMBOL_TO_TORCH", "TORCH_TO_SYMBOL", "dispatch", "is_torch_callable", "namespace"]


def dispatch(fn, args, kwargs):
    """Runs torch callable ``fn`` on proxies: its symbol, or an opaque symbol for it."""
    if _is_state_query(fn, args, kwargs) or (fn in _VALUE_TYPES and not _has_proxy(args, kwargs)):
        return fn(*args, **kwargs)
    if is_inplace(fn, kwargs):
        _forget_known_values(kwargs.get("out", args[0] if args else None))
        return opaque_call(fn, args, kwargs)
    target = _symbol_for(fn)
    if target is None:
        result = opaque_call(fn, args, kwargs)
        if fn in _FROM_DATA:
            constant_value(fn, args, kwargs, result)
        return result
    given = args, kwargs
    if kwargs:
        args, kwargs = torch_keywords_by_position(getattr(fn, "__name__", ""), target, args, kwargs)
    result = target(*args, **kwargs)
    constant_value(fn, *given, result)
    return result


@functools.lru_cache(maxsize=None)
def _parameters(target) -> tuple[list[str], set[str], bool, str | None]:
    """A symbol's definition (or an adapter): its positional parameter names, all its parameter
    names, whether it takes ``**kwargs``, and the name of its ``*args`` parameter (if any)."""
    fn = getattr(target, "fn", target)
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return [], set(), True, None
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
    return positional, {p.name for p in params}, any(p.kind is p.VAR_KEYWORD for p in params), var_positional


def torch_keywords_by_position(name: str, target, args, kwargs):
    """Arguments the caller passed by torch's own parameter names (``baddbmm(batch1=q, batch2=k)``)
    where the definition names them differently: moved to their positions, which torch's operator
    schema gives. A keyword naming the definition's ``*size`` parameter (``x.new_ones(size=s)``,
    ``torch.zeros(size=s)``) becomes the last positional argument. NumPy's ``axis``/``keepdims``
    are ``dim``/``keepdim``. Keywords the definition knows are left alone."""
    names, known, var_keyword, var_positional = _parameters(target)
    if any(k in _NUMPY_NAMES and k not in known for k in kwargs):
        kwargs = {_NUMPY_NAMES.get(k, k) if k not in known else k: v for k, v in kwargs.items()}
    if var_positional is not None and var_positional in kwargs and len(args) == len(names):
        kwargs = dict(kwargs)
        args = (*args, kwargs.pop(var_positional))
    unknown = [k for k in kwargs if k not in known]
    if not unknown or var_keyword:
        return args, kwargs
    schema_names = _schema_positional_names(name, frozenset(unknown))
    if schema_names is None:
        return args, kwargs
    positions = {k: schema_names.index(k) for k in unknown}
    last = max(positions.values())
    if last >= len(names) or any(i < len(args) for i in positions.values()):
        return args, kwargs
    moved = dict(kwargs)
    filled = list(args)
    for i in range(len(args), last + 1):
        if schema_names[i] in moved:
            filled.append(moved.pop(schema_names[i]))
        elif names[i] in moved:
            filled.append(moved.pop(names[i]))
        else:
            return args, kwargs  # a gap: let the call fail with torch-like arguments as given
    return tuple(filled), moved


# NumPy's names, which torch's argument parser accepts for every operator (``torch.cat(ts, axis=0)``)
_NUMPY_NAMES = {"axis": "dim", "keepdims": "keepdim"}


@functools.lru_cache(maxsize=None)
def _schema_positional_names(name: str, wanted: frozenset) -> tuple | None:
    """The positional parameter names (``self`` spelled ``input``, as Python calls it) of the first
    overload of ``aten.<name>`` that has all of ``wanted``."""
    packet = getattr(torch.ops.aten, name.rstrip("_"), None)
    if packet is None:
        return None
    for overload in packet.overloads():
        arguments = getattr(packet, overload)._schema.arguments
        positional = tuple("input" if a.name == "self" else a.name for a in arguments if not a.kwarg_only)
        if wanted <= set(positional):
            return positional
    return None


def _is_state_query(fn, args, kwargs) -> bool:
    """torch's queries of its own state (``is_grad_enabled``, ``get_default_dtype``) on no traced
    value: answered while tracing, not recorded (acquisition keeps grad mode as the program sets
    it, and the prologue guards the mode the trace was made under)."""
    name = getattr(fn, "__name__", "") or ""
    if not name.lstrip("_").startswith(("is_", "get_", "are_")) or _symbol_for(fn) is not None:
        return False
    return not _has_proxy(args, kwargs)


# torch's value types: constructed on constants, they are constants themselves (no operation)
_VALUE_TYPES = {torch.device, torch.Size, torch.finfo, torch.iinfo}


# symbols whose result's value follows from their arguments' values (no randomness, no memory)
_VALUE_MODULES = {elementwise.__name__, shape.__name__, creation.__name__}
_FROM_DATA = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor}  # tensors made from Python numbers
_MAX_KNOWN_NUMEL = 4096  # larger values are not worth computing while tracing
_CONSTANT_LEAVES = (int, float, bool, str, type(None), torch.dtype, slice, type(Ellipsis))


def constant_value(fn, args, kwargs, result) -> None:
    """Gives a small ``result`` its value (``TensorProxy.value``) when that is fixed by what the
    prologue guards: elementwise math, shape operations, indexing and creation (``arange``) on
    Python numbers (given or guarded) and tensors with known values, computed as eager computes
    it, so Python code may use it as a size or in a branch (``view(n, torch.div(seq_len, w,
    rounding_mode="trunc"))``, ``if cache_position[0] > 0``); or a comparison that the range of a
    uniform draw decides (``torch.rand([])`` has ``interval`` [0, 1)). An in-place operation
    forgets the values of the tensors that may share the modified tensor's memory."""
    if not isinstance(result, proxies.TensorProxy) or result.numel() > _MAX_KNOWN_NUMEL:
        return
    if fn in (torch.rand, torch.rand_like):
        result.interval = (0.0, 1.0)
        return
    decided = _decided_by_interval(fn, args)
    if decided is not None:
        _know(result, torch.tensor(decided))
        return
    if fn not in _FROM_DATA and _defined_in(_symbol_for(fn)) not in _VALUE_MODULES:
        return
    flat, spec = tree_flatten((args, {k: v for k, v in kwargs.items() if k != "device"}))
    values = []
    for x in flat:
        if isinstance(x, proxies.TensorProxy) and x.value is not None:
            values.append(x.value)
        elif isinstance(x, proxies.NumberProxy):  # the prologue guards its value
            values.append(x.value)
        elif type(x) in _CONSTANT_LEAVES:
            values.append(x)
        else:
            return
    real_args, real_kwargs = tree_unflatten(values, spec)
    try:
        value = fn(*real_args, **real_kwargs)
    except Exception:  # noqa: BLE001 -- the value stays unknown; the traced operation stands
        return
    if isinstance(value, torch.Tensor) and value.shape == result.shape and value.dtype == result.dtype:
        _know(result, value, fn, args)


def _know(proxy, value, fn=None, args=()) -> None:
    """Records ``proxy``'s value, with the tensor whose memory it is (itself when ``fn`` made new
    memory, the root of its one tensor argument when ``fn`` may return a view, None: unknown)."""
    proxy.value = value
    tensors = [a for a in tree_flatten(args)[0] if isinstance(a, proxies.TensorProxy)]
    known = current_trace().known_values
    if fn is None or not tensors or _makes_new_memory(fn):
        known[proxy] = proxy
    else:
        known[proxy] = known.get(tensors[0]) if len(tensors) == 1 else None


_NEW_MEMORY = {torch.cat, torch.concat, torch.concatenate, torch.stack, torch.tensor, torch.Tensor.new_tensor}


def _makes_new_memory(fn) -> bool:
    return fn in _NEW_MEMORY or _defined_in(_symbol_for(fn)) == elementwise.__name__


def _defined_in(symbol) -> str | None:
    """The module of the torch language that defines ``symbol`` (``thunder.torch.shape``...)."""
    return getattr(getattr(symbol, "fn", None), "__module__", None)


def _memory_root(x, depth: int = 8, window: int = 256):
    """The tensor whose memory ``x`` is: an input of the trace, or the result of an operation that
    makes new memory, found by following the shape operations and conversions recorded last back
    from ``x``; None when that is not certain."""
    trace = current_trace()
    inputs = {id(a) for a in trace.args}
    for _ in range(depth):
        if not isinstance(x, proxies.TensorProxy):
            return None
        if id(x) in inputs:
            return x
        producer = next((b for b in reversed(trace.bound_symbols[-window:])
                         if any(o is x for o in b.flat_proxy_outputs())), None)
        module = _defined_in(getattr(producer, "sym", None))
        tensors = [p for p in producer.flat_proxy_args() if isinstance(p, proxies.TensorProxy)] if producer else []
        if module in (elementwise.__name__, reduction.__name__) or (module == creation.__name__ and not tensors):
            return x
        if module not in (shape.__name__, creation.__name__) or len(tensors) != 1:
            return None
        x = tensors[0]
    return None


def _forget_known_values(modified) -> None:
    """Before ``modified`` changes in place: forget the values of the tensors that may share its
    memory (all of them, when where its memory comes from is not certain)."""
    known = current_trace().known_values
    if not known:
        return
    root = _memory_root(modified)
    for proxy, proxy_root in list(known.items()):
        if root is None or proxy_root is None or proxy_root is root:
            proxy.value = None
            del known[proxy]


def _decided_by_interval(fn, args) -> bool | None:
    """The outcome of ``x < c`` (``<=``, ``>``, ``>=``) for ``x`` drawn from ``[low, high)`` and a
    number ``c`` outside that range, or None."""
    op = getattr(fn, "__name__", "").strip("_")
    if op not in ("lt", "le", "gt", "ge") or len(args) != 2:
        return None
    x, c = args
    c = c.value if isinstance(c, proxies.NumberProxy) else c
    if not isinstance(x, proxies.TensorProxy) or x.interval is None or type(c) not in (int, float):
        return None
    low, high = x.interval
    if c >= high:
        return op in ("lt", "le")
    if c < low or (c == low and op in ("lt", "ge")):
        return op in ("gt", "ge")
    return None


def _has_proxy(args, kwargs) -> bool:
    return any(isinstance(x, proxies.Proxy) for x in tree_flatten((args, kwargs))[0])


def _symbol_for(fn):
    """The symbol (or adapter) registered for ``fn``, also when torch has since wrapped ``fn``
    (importing torch._dynamo wraps ``torch.manual_seed``, for one)."""
    target = TORCH_TO_SYMBOL.get(fn)
    while target is None and hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
        target = TORCH_TO_SYMBOL.get(fn)
    if target is None:  # a Tensor method called as a function (torch.Tensor.__radd__(t, 2))
        name = getattr(fn, "__name__", None)
        if name in proxies.TENSOR_METHODS and getattr(torch.Tensor, name, None) is fn:
            target = proxies.TENSOR_METHODS[name]
    return target


def is_torch_callable(fn) -> bool:
    """Whether ``fn`` is a torch operation that acquisition should dispatch rather than interpret."""
    if _symbol_for(fn) is not None or isinstance(fn, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return True
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", "") or ""
    if module in _TORCH_C_OP_MODULES:
        return True
    if module == "torch" and callable(fn):
        return True  # builtins like torch.cumsum report module "torch"
    return qualname.startswith(("TensorBase.", "Tensor.")) and not module.startswith("torch.nn")


# the modules of torch's operator bindings (torch.nn.functional, torch.fft, torch.linalg... call them)
_TORCH_C_OP_MODULES = {"torch._C._nn", "torch._C._fft", "torch._C._linalg", "torch._C._special",
                       "torch._C._sparse", "torch._C._nested"}

proxies.TORCH_FUNCTION_HANDLER[0] = dispatch
proxies.KEYWORDS_HANDLER[0] = torch_keywords_by_position
proxies.CONSTANT_VALUE_HANDLER[0] = constant_value
