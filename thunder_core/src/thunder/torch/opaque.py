"""Opaque symbols: every torch operation without a torch-language definition.

Calling an unknown torch callable on proxies records a symbol named after it (``torch.cumsum``
is ``opaque.cumsum`` in the acquired trace, ``torch.cumsum`` once the torch executor claims it)
whose outputs' metadata come from running the callable on fake tensors (shapes, dtypes and
devices exactly as torch computes them, no data). The torch executor runs it by calling the
torch callable itself, and torch's autograd differentiates it. Operations whose output shape
depends on tensor values (``nonzero``, boolean masking, ``.item()``) cannot be traced and raise
``DataDependentError`` naming the operation.
"""

from __future__ import annotations

import functools
import re

import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensorMode
from torch.utils._pytree import tree_flatten, tree_map

from thunder.core.errors import DataDependentError, UnsupportedOpError
from thunder.core.proxies import NumberProxy, Proxy, TensorProxy, pyval
from thunder.core.symbol import Symbol
from thunder.torch.registry import SYMBOL_TO_TORCH

OPAQUE: dict[object, Symbol] = {}


class _OpaqueNamespace:
    """What ``opaque`` names in a printed acquisition trace."""


namespace = _OpaqueNamespace()


@functools.lru_cache(maxsize=1)
def _fake_mode() -> FakeTensorMode:
    return FakeTensorMode(allow_non_fake_inputs=False)


def callable_name(fn) -> str:
    """A readable dotted name for a torch callable: ``torch.cumsum``, ``Tensor.index_put_``,
    ``torch.ops.aten.slice.Tensor``."""
    if isinstance(fn, torch._ops.OpOverload):
        return f"torch.ops.{fn.namespace}.{fn._opname}.{fn._overloadname}"
    if isinstance(fn, torch._ops.OpOverloadPacket):
        return f"torch.ops.{fn._qualified_op_name.replace('::', '.')}"
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):  # MyFunction.apply
        return f"{owner.__qualname__}.{fn.__name__}"
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    if "<locals>" in qualname:  # made by a factory (torch.nn.functional.max_pool2d): use its name
        qualname = getattr(fn, "__name__", qualname)
    module = getattr(fn, "__module__", None) or ""
    qualname = qualname.removeprefix("_VariableFunctionsClass.")  # torch.nonzero and friends
    if qualname.startswith("TensorBase."):
        qualname = "Tensor." + qualname.removeprefix("TensorBase.")
    if qualname.startswith("Tensor."):
        return qualname
    if module.startswith("torch._C") or not module:
        module = "torch"
    return f"{module}.{qualname}"


def _symbol_name(fn) -> str:
    """A Python identifier naming ``fn``, unique among opaque symbols."""
    base = re.sub(r"\W", "_", callable_name(fn).removeprefix("torch."))
    name, n = base, 0
    while hasattr(namespace, name):
        n += 1
        name = f"{base}_{n}"
    return name


def is_inplace(fn, kwargs) -> bool:
    name = getattr(fn, "__name__", "")
    return (name.endswith("_") and not name.endswith("__")) or kwargs.get("inplace") is True \
        or name in ("__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__") or "out" in kwargs


def _run_on_fakes(fn, args, kwargs):
    """Runs ``fn`` on fake tensors standing in for the proxies; returns (fake result, fakes)."""
    mode = _fake_mode()
    fakes: dict[int, torch.Tensor] = {}

    def to_fake(x):
        if isinstance(x, TensorProxy):
            if id(x) not in fakes:
                with mode:
                    fakes[id(x)] = torch.empty(x.shape, dtype=x.dtype, device=x.device)
            return fakes[id(x)]
        return pyval(x) if isinstance(x, NumberProxy) else x

    fargs, fkwargs = tree_map(to_fake, (args, kwargs))
    name = callable_name(fn)
    if fn is torch.Tensor.backward:
        raise autograd_inside_error()
    if getattr(fn, "__name__", None) in _MEMORY_ACCESSORS:
        raise UnsupportedOpError(f"{name} is not supported: it reads a tensor's memory (address, storage or "
                                 "data as NumPy), which a trace does not have; do it outside the compiled "
                                 "function")
    try:
        with mode:
            return fn(*fargs, **fkwargs), fakes
    except (DynamicOutputShapeException, DataDependentOutputException) as e:
        raise DataDependentError(
            f"{name} is not supported: its result depends on the values in a tensor, which are "
            "not known while tracing") from e
    except (NotImplementedError, TypeError, RuntimeError) as e:
        if "data is not allocated" in str(e):  # the op read a tensor's values (tensor_split's indices)
            raise DataDependentError(
                f"{name} is not supported: its output shapes depend on the values in a tensor, "
                "which are not known while tracing") from e
        if "meta" in str(e) or "fake" in str(e).lower() or "subclass" in str(e) or isinstance(e, NotImplementedError):
            raise UnsupportedOpError(f"{name} is not supported: PyTorch cannot compute its output "
                                     f"shapes without data ({e})") from e
        raise


def autograd_inside_error() -> UnsupportedOpError:
    return UnsupportedOpError(
        "backward() / torch.autograd.grad inside the compiled function is not supported: Thunder "
        "differentiates the compiled program itself. Compile the forward (the model, or a function "
        "returning the loss) and call .backward() and the optimizer step outside it.")


# Tensor methods whose result is the tensor's memory itself, not a value computed from it
_MEMORY_ACCESSORS = {"data_ptr", "untyped_storage", "storage", "_storage", "storage_offset_ptr", "numpy",
                     "__array__", "__dlpack__", "__dlpack_device__", "_cdata"}


def _opaque_meta(fn, *args, **kwargs):
    """The outputs of ``fn`` as proxies; an output that is an input (in-place ops) stays that proxy."""
    fake_out, fakes = _run_on_fakes(fn, args, kwargs)
    proxies = _proxies(args, kwargs)
    by_fake = {id(fakes[id(p)]): p for p in proxies}
    requires_grad = torch.is_grad_enabled() and any(p.requires_grad for p in proxies)
    if requires_grad and fake_out is None:  # ``t[i] = v`` writes ``t``, returns nothing: now ``t`` needs one
        for p in proxies:
            if fakes[id(p)]._version and p.dtype.is_floating_point:
                p.requires_grad = True

    def to_proxy(x):
        if isinstance(x, torch.Tensor):
            aliased = by_fake.get(id(x))
            if aliased is not None:  # modified in place: from now on it needs a gradient if an input does
                aliased.requires_grad = aliased.requires_grad or (requires_grad and x.dtype.is_floating_point)
                return aliased
            return TensorProxy(x.shape, x.dtype, x.device, requires_grad)
        return x

    return tree_map(to_proxy, fake_out)


class ValueProxy(Proxy):
    """A Python number computed from tensor values when the program runs (``Tensor.item()``,
    ``torch.equal``): the program may return it; using it in Python while tracing (a branch,
    arithmetic) needs its value: that of ``.item()`` is computed from the call's inputs where it
    can be (``thunder.acquire.known_values``), otherwise it is a ``DataDependentError``. Not a
    ``NumberProxy``, whose value is known."""

    __slots__ = ("python_type", "op", "source")

    def __init__(self, python_type: type, op: str, source: TensorProxy | None = None):
        Proxy.__init__(self, None, {bool: "b", int: "i", float: "f", complex: "c"}[python_type])
        self.python_type = python_type
        self.op = op
        self.source = source  # the tensor ``.item()`` reads, whose value acquisition may compute

    @property
    def value(self):
        if self.source is not None:  # computed from the call's inputs and guarded, or an error naming why
            return self.source._known_value().item()
        raise DataDependentError(
            f"the program uses the result of {self.op} ({self.name}) while tracing, but it depends on "
            "the values in a tensor, which are not known then. Return it, or keep the computation "
            "in tensors (without .item()).")

    def describe(self) -> str:
        return f"{self.python_type.__name__} from {self.op}"

    def __hash__(self):
        return id(self)

    def __repr__(self) -> str:
        return self.name

    def __str__(self):
        return self.value


def _fail(name):
    def op(self, *args):
        return self.value

    op.__name__ = name
    return op


for _name in ("__bool__ __index__ __int__ __float__ __complex__ __format__ __add__ __radd__ __sub__ "
              "__rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ __rfloordiv__ __mod__ "
              "__rmod__ __pow__ __rpow__ __neg__ __pos__ __abs__ __eq__ __ne__ __lt__ __le__ __gt__ "
              "__ge__ __and__ __or__ __xor__ __invert__ __lshift__ __rshift__ __round__ __trunc__ "
              "__floor__ __ceil__").split():
    setattr(ValueProxy, _name, _fail(_name))


def _python_type(dtype: torch.dtype) -> type:
    if dtype == torch.bool:
        return bool
    if dtype.is_complex:
        return complex
    return float if dtype.is_floating_point else int


def opaque_with_meta(fn):
    """Registers the decorated meta function (proxies in, output proxies out) for torch callable
    ``fn``, which then stays opaque (run and differentiated by torch) but no longer needs fake
    tensors: for operations whose fake implementation reads values although their output shapes
    do not depend on them (``ctc_loss``)."""

    def decorator(meta):
        sym = Symbol(_symbol_name(fn), meta, module="opaque", is_prim=True, module_object=namespace,
                     tags=("opaque",))
        OPAQUE[fn] = sym
        setattr(namespace, sym.name, sym)
        SYMBOL_TO_TORCH[sym.id] = fn
        return sym

    return decorator


def opaque_symbol(fn) -> Symbol:
    """The opaque symbol for a torch callable (one per callable)."""
    sym = OPAQUE.get(fn)
    if sym is None:
        sym = Symbol(_symbol_name(fn), functools.partial(_opaque_meta, fn), module="opaque",
                     is_prim=True, module_object=namespace, tags=("opaque",))
        OPAQUE[fn] = sym
        setattr(namespace, sym.name, sym)
        SYMBOL_TO_TORCH[sym.id] = fn
    return sym


def opaque_call(fn, args, kwargs):
    """Records ``fn(*args, **kwargs)`` as one opaque symbol and returns its outputs' proxies."""
    return opaque_symbol(fn)(*args, **kwargs)


def shares_memory_with_inputs(bsym) -> bool:
    """Whether an opaque symbol's outputs may share memory with its inputs (a view, or an input
    returned as it is), found by running a torch operation again on fake tensors; True when that
    fails, and for code outside torch (a user's autograd.Function: not run twice)."""
    fn = SYMBOL_TO_TORCH.get(bsym.sym.id)
    module = getattr(fn, "__module__", None) or getattr(getattr(fn, "__objclass__", None), "__module__", None)
    if not (module or "").startswith("torch"):
        return True
    try:
        out, fakes = _run_on_fakes(fn, bsym.args, bsym.kwargs)
        inputs = {f.untyped_storage()._cdata for f in fakes.values()}
        return any(isinstance(o, torch.Tensor) and o.untyped_storage()._cdata in inputs for o in tree_flatten(out)[0])
    except Exception:  # noqa: BLE001 - cannot tell: assume it may
        return True


def _proxies(args, kwargs):
    return [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, TensorProxy)]


# -- operations that read tensor values into Python numbers ------------------------------------

@opaque_with_meta(torch.Tensor.item)
def _item_meta(a):
    if a.numel() != 1:
        raise RuntimeError(f"a Tensor with {a.numel()} elements cannot be converted to Scalar")
    return ValueProxy(_python_type(a.dtype), "Tensor.item()", a)


@opaque_with_meta(torch.equal)
def _equal_meta(a, b):
    return ValueProxy(bool, "torch.equal")


@opaque_with_meta(torch.allclose)
def _allclose_meta(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    torch.broadcast_shapes(a.shape, b.shape)
    return ValueProxy(bool, "torch.allclose")
