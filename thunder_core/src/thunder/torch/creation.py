"""Tensor creation and conversion: full/zeros/ones/arange, *_like, to/type conversions."""

from __future__ import annotations

import torch

from thunder import prims
from thunder.core.proxies import TensorProxy, pyval
from thunder.torch.promotion import to_dtype
from thunder.torch.registry import method_only, tensor_method, torchsymbol


def _device(device, default=None) -> torch.device:
    if device is None:
        return default if default is not None else torch.device("cpu")
    return torch.device(device)


def _size(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        size = size[0]
    return tuple(int(pyval(s)) for s in size)


def _fill_dtype(fill_value) -> torch.dtype:
    value = pyval(fill_value)
    if isinstance(value, bool):
        return torch.bool
    if isinstance(value, int):
        return torch.int64
    if isinstance(value, complex):
        return torch.complex64
    return torch.get_default_dtype()


@torchsymbol(torch.full)
def full(size, fill_value, *, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False):
    return prims.full(_size((size,)), fill_value, dtype or _fill_dtype(fill_value), _device(device))


@torchsymbol(torch.zeros)
def zeros(*size, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False, out=None):
    return prims.full(_size(size), 0, dtype or torch.get_default_dtype(), _device(device))


@torchsymbol(torch.ones)
def ones(*size, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False, out=None):
    return prims.full(_size(size), 1, dtype or torch.get_default_dtype(), _device(device))


@torchsymbol(torch.full_like)
def full_like(a, fill_value, *, dtype=None, layout=None, device=None, pin_memory=False,
              requires_grad=False, memory_format=None):
    return prims.full(tuple(a.shape), fill_value, dtype or a.dtype, _device(device, a.device))


@torchsymbol(torch.zeros_like)
def zeros_like(a, *, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False,
               memory_format=None):
    return full_like(a, 0, dtype=dtype, device=device)


@torchsymbol(torch.ones_like)
def ones_like(a, *, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False,
              memory_format=None):
    return full_like(a, 1, dtype=dtype, device=device)


@torchsymbol(tensor_method("new_zeros"), methods=["new_zeros"])
def new_zeros(a, *size, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False):
    return prims.full(_size(size), 0, dtype or a.dtype, _device(device, a.device))


@torchsymbol(tensor_method("new_ones"), methods=["new_ones"])
def new_ones(a, *size, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False):
    return prims.full(_size(size), 1, dtype or a.dtype, _device(device, a.device))


@torchsymbol(tensor_method("new_full"), methods=["new_full"])
def new_full(a, size, fill_value, *, dtype=None, layout=None, device=None, pin_memory=False,
             requires_grad=False):
    return prims.full(_size((size,)), fill_value, dtype or a.dtype, _device(device, a.device))


def _number(x):
    """A Python number, also from a tensor whose value is known while tracing (``arange(t[0], n)``)."""
    if isinstance(x, TensorProxy):
        return x._known_value().item()  # without a known value: DataDependentError
    return pyval(x)


@torchsymbol(torch.arange)
def arange(start, end=None, step=1, *, out=None, dtype=None, layout=None, device=None,
           pin_memory=False, requires_grad=False):
    if end is None:
        start, end = 0, start
    start, end, step = (_number(v) for v in (start, end, step))
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = torch.get_default_dtype() if is_float else torch.int64
    length = max(0, -(-(end - start) // step)) if isinstance(start + end + step, int) else \
        max(0, int(torch.ceil(torch.tensor((end - start) / step)).item()))
    return prims.iota(length, start, step, dtype, _device(device))


# -- conversions ------------------------------------------------------------------------------

def _parse_to(a, args, kwargs):
    """Tensor.to's overloads: to(dtype), to(device, dtype=None), to(other), with keywords."""
    dtype, device = kwargs.get("dtype"), kwargs.get("device")
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, (str, torch.device)):
            device = torch.device(arg)
        elif isinstance(arg, TensorProxy):
            dtype, device = arg.dtype, arg.device
    return dtype, device


def _same_device(device: torch.device, like: torch.device) -> bool:
    """``"cuda"`` names the current CUDA device, as eager resolves it."""
    if device.type == like.type and device.index is None:
        return True
    return device == like


@torchsymbol(tensor_method("to"), methods=["to"])
def to(a, *args, **kwargs):
    dtype, device = _parse_to(a, args, kwargs)
    device = None if device is None else torch.device(device)  # also given as a string keyword
    if device is not None and not _same_device(device, a.device):
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        a = prims.device_put(a, device)
    return to_dtype(a, dtype) if dtype is not None else a


@method_only("cpu")
def cpu(a, memory_format=None):
    return to(a, "cpu")


@method_only("cuda")
def cuda(a, device=None, non_blocking=False, memory_format=None):
    return to(a, torch.device("cuda") if device is None else
              torch.device("cuda", device) if isinstance(device, int) else torch.device(device))


@torchsymbol(tensor_method("type_as"), methods=["type_as"])
def type_as(a, other):
    return to_dtype(a, other.dtype)


def _conversion(name: str, dtype: torch.dtype):
    def convert(a, memory_format=None):
        return to_dtype(a, dtype)

    convert.__name__ = name
    return method_only(name)(convert)


for _name, _dtype in (("float", torch.float32), ("double", torch.float64), ("half", torch.float16),
                      ("bfloat16", torch.bfloat16), ("long", torch.int64), ("int", torch.int32),
                      ("short", torch.int16), ("char", torch.int8), ("byte", torch.uint8),
                      ("bool", torch.bool)):
    _conversion(_name, _dtype)


@method_only("type")
def type_(a, dtype=None, non_blocking=False):
    if dtype is None:
        raise NotImplementedError("Tensor.type() without a dtype returns a string")
    return to_dtype(a, dtype)
