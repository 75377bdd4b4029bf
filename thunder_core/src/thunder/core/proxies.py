"""Proxies: the stand-ins for values while a program is being traced.

A proxy has a name (the variable it becomes in the printed trace) and the metadata that
operations need to compute their outputs' metadata. A ``TensorProxy`` carries shape, dtype,
device and requires_grad; a ``NumberProxy`` carries a Python number whose value is known at
trace time (and guarded by the prologue), so Python code can compute with it freely while torch
operations that receive it refer to it by name.

Tensor methods and operators on a ``TensorProxy`` are looked up in ``TENSOR_METHODS``, which the
torch language (``thunder.torch``) fills in; ``__torch_function__`` routes torch functions called
with proxies (also from code that runs natively, outside the interpreter) to the same place.
"""

from __future__ import annotations

import math
import operator

import torch

from thunder.core.trace import current_trace, is_tracing

# name -> callable(proxy, *args, **kwargs); filled by thunder.torch
TENSOR_METHODS: dict[str, object] = {}
# hook set by thunder.torch: (torch callable, args, kwargs) -> result, for __torch_function__
TORCH_FUNCTION_HANDLER: list = [None]
# hook set by thunder.torch: (op name, symbol, args, kwargs) -> (args, kwargs) with arguments given by
# torch's parameter names moved to their positions
KEYWORDS_HANDLER: list = [None]
# hook set by thunder.torch: (torch callable, args, kwargs, result) -> None, giving ``result`` its
# value when that follows from constants (see ``TensorProxy.value``)
CONSTANT_VALUE_HANDLER: list = [None]

_SHORT_DTYPE = {
    torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
    torch.bool: "b8", torch.complex64: "c64", torch.complex128: "c128",
}


def short_dtype(dtype: torch.dtype) -> str:
    return _SHORT_DTYPE.get(dtype, str(dtype).removeprefix("torch."))


class Proxy:
    """A named value in a trace."""

    __slots__ = ("name",)

    def __init__(self, name: str | None = None, prefix: str = "t"):
        self.name = name if name is not None else current_trace().make_name(prefix)

    def __repr__(self) -> str:
        return self.name


class TensorProxy(Proxy):
    """A tensor in a trace: its name and metadata, no data. ``value`` is the real (small) tensor it
    holds when that is known while tracing: math, shape operations and creation on constants
    (``torch.div(seq_len, 2) - 1`` with ``seq_len`` a guarded Python int, ``torch.arange(n)[0]``),
    or a comparison whose outcome the range of a random draw decides (``torch.rand([]) < 0.0``: a
    layer-drop test with layer drop off); see ``thunder.torch.constant_value``. Python code may use
    such a value (as a size, in a branch) like eager does; every other tensor's value is unknown
    while tracing. ``interval`` is ``(low, high)`` for a
    scalar drawn uniformly from ``[low, high)``."""

    __slots__ = ("shape", "dtype", "device", "requires_grad", "value", "interval")

    def __init__(self, shape, dtype: torch.dtype, device, requires_grad: bool = False,
                 name: str | None = None):
        super().__init__(name, "t")
        self.shape = torch.Size(int(s) for s in shape)
        self.dtype = dtype
        self.device = torch.device(device)
        self.requires_grad = bool(requires_grad) and (dtype.is_floating_point or dtype.is_complex)
        self.value = None
        self.interval = None

    @staticmethod
    def like(t: torch.Tensor, name: str | None = None) -> TensorProxy:
        return TensorProxy(t.shape, t.dtype, t.device, t.requires_grad, name=name)

    def describe(self) -> str:
        """What the printed trace shows for this tensor: device, dtype and shape."""
        return f'{self.device} {short_dtype(self.dtype)}[{", ".join(map(str, self.shape))}]'

    # -- metadata, answered from the proxy itself --------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        return self.shape[dim]

    def numel(self) -> int:
        return self.shape.numel()

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def is_complex(self) -> bool:
        return self.dtype.is_complex

    @property
    def is_meta(self) -> bool:
        return False

    @property
    def layout(self):
        return torch.strided

    @property
    def is_sparse(self) -> bool:
        return False

    @property
    def is_quantized(self) -> bool:
        return False

    @property
    def is_nested(self) -> bool:
        return False

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def _known_value(self):
        if self.value is not None:
            return self.value
        resolve = getattr(current_trace(), "resolve_value", None) if is_tracing() else None
        if resolve is not None:  # while acquiring: computed from the call's inputs, and guarded
            self.value = resolve(self)
            current_trace().known_values[self] = None  # any later in-place write forgets it
            return self.value
        from thunder.core.errors import DataDependentError

        raise DataDependentError(
            f"the program uses the value of tensor {self.name} ({self.describe()}) in Python "
            "(a branch, bool(), int() or indexing with it), but values are not known while tracing. "
            "Express the choice with tensor ops (e.g. torch.where), or move it out of the compiled "
            "function.")

    def __bool__(self):
        return bool(self._known_value())

    def __index__(self):
        return self._known_value().__index__()

    def __int__(self):
        return int(self._known_value())

    def __float__(self):
        return float(self._known_value())

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self) -> int:
        return id(self)

    # -- everything else is the torch language -----------------------------------------------
    def __getattr__(self, name: str):
        if name in ("item", "tolist") and self.value is not None:  # known, and fixed by the prologue
            known = self.value
            return lambda: getattr(known, name)()
        method = TENSOR_METHODS.get(name)
        if method is not None:
            def call(*args, **kwargs):
                given = (self, *args), kwargs
                if kwargs:
                    args, kwargs = KEYWORDS_HANDLER[0](name, method, (self, *args), kwargs)
                    result = method(*args, **kwargs)
                else:
                    result = method(self, *args)
                if self.value is not None:
                    CONSTANT_VALUE_HANDLER[0](getattr(torch.Tensor, name), *given, result)
                return result

            return call
        torch_method = getattr(torch.Tensor, name, None)
        if callable(torch_method) and not name.startswith("_"):
            # a Tensor method without a torch-language definition: traced as an opaque op
            def opaque_method(*args, **kwargs):
                return TORCH_FUNCTION_HANDLER[0](torch_method, (self, *args), kwargs)

            opaque_method.tensor_method, opaque_method.receiver = torch_method, self  # for acquisition
            return opaque_method
        if name in ("grad", "_grad"):
            from thunder.core.errors import UnsupportedOpError

            raise UnsupportedOpError(
                "reading a tensor's .grad inside the compiled function is not supported (gradients exist "
                "once the backward has run): compile the forward, and run gradient clipping and the "
                "optimizer step outside the compiled function")
        raise AttributeError(f"Thunder does not support the Tensor attribute '{name}' in traced code")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return TORCH_FUNCTION_HANDLER[0](func, args, kwargs or {})


def _forward(name: str):
    def method(self, *args, **kwargs):
        impl = TENSOR_METHODS.get(name)
        if impl is None:  # an operator without a torch-language definition: opaque
            return TORCH_FUNCTION_HANDLER[0](getattr(torch.Tensor, name), (self, *args), kwargs)
        result = impl(self, *args, **kwargs)
        if self.value is not None or self.interval is not None:
            CONSTANT_VALUE_HANDLER[0](getattr(torch.Tensor, name), (self, *args), kwargs, result)
        return result

    method.__name__ = name
    return method


# Python looks operators up on the type, not the instance, so they are defined here and forward
# to the torch language.
for _name in (
    "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ "
    "__rfloordiv__ __mod__ __rmod__ __pow__ __rpow__ __matmul__ __rmatmul__ __neg__ __pos__ "
    "__abs__ __invert__ __and__ __rand__ __or__ __ror__ __xor__ __rxor__ __lshift__ __rshift__ "
    "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __getitem__ __setitem__ __iadd__ __isub__ "
    "__imul__ __itruediv__ __ifloordiv__ __imod__ __ipow__ __iand__ __ior__ __ixor__ __ilshift__ "
    "__irshift__"
).split():
    setattr(TensorProxy, _name, _forward(_name))


class NumberProxy(Proxy):
    """A Python number given to the program. It behaves exactly like its value in Python code
    (the prologue guards that value), and torch operations that receive it refer to it by name."""

    __slots__ = ("value", "python_type")

    def __init__(self, value, name: str | None = None):
        super().__init__(name, {bool: "b", int: "i", float: "f", complex: "c"}[type(value)])
        self.value = value
        self.python_type = type(value)

    def describe(self) -> str:
        return f"{self.python_type.__name__} {self.value!r}"

    def __bool__(self):
        return bool(self.value)

    def __index__(self):
        return self.value.__index__()

    def __int__(self):
        return int(self.value)

    def __float__(self):
        return float(self.value)

    def __complex__(self):
        return complex(self.value)

    def __hash__(self):
        return hash(self.value)

    def __format__(self, spec):
        return format(self.value, spec)

    def __str__(self):
        return str(self.value)


def _binary(fn, reflected: bool):
    def op(self, other):
        if isinstance(other, TensorProxy):
            return NotImplemented  # the tensor's reflected method records a torch operation
        other = other.value if isinstance(other, NumberProxy) else other
        return fn(other, self.value) if reflected else fn(self.value, other)

    return op


for _name in "add sub mul truediv floordiv mod pow and or xor lshift rshift".split():
    _fn = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    setattr(NumberProxy, f"__{_name}__", _binary(_fn, False))
    # through ``operator`` so mixed types work as in Python (``2.0 / n`` for an int n)
    setattr(NumberProxy, f"__r{_name}__", _binary(_fn, True))
for _name in "eq ne lt le gt ge".split():
    setattr(NumberProxy, f"__{_name}__", _binary(getattr(operator, _name), False))
for _name, _fn in (("neg", operator.neg), ("pos", operator.pos), ("abs", abs), ("invert", operator.invert),
                   ("trunc", math.trunc), ("floor", math.floor), ("ceil", math.ceil)):
    setattr(NumberProxy, f"__{_name}__", lambda self, _fn=_fn: _fn(self.value))
NumberProxy.__round__ = lambda self, ndigits=None: round(self.value, ndigits)


def pyval(x):
    """The Python value of a number or NumberProxy."""
    return x.value if isinstance(x, NumberProxy) else x
