"""Shape and view ops: reshape, permute, slicing, indexing, concatenation, splitting.

Views are decomposed into value-semantics primitives (reshape, transpose, slice); the torch
executor runs the torch view op itself, so eager aliasing is kept where it matters.
"""

from __future__ import annotations

import builtins
import itertools
import math
import operator

import torch

from thunder import prims
from thunder.core.proxies import NumberProxy, TensorProxy, pyval
from thunder.torch.creation import arange
from thunder.torch.elementwise import add, ge, le, lt, sub, where
from thunder.torch.opaque import opaque_call
from thunder.torch.promotion import broadcast, broadcast_to, result_dtype, to_dtype
from thunder.torch.registry import adapts, method_only, tensor_method, tensor_property, torchsymbol


def canonical_dim(dim, ndim: int) -> int:
    dim = operator.index(pyval(dim))
    rank = builtins.max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(f"dimension {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % rank


def _shape_arg(shape) -> list:
    """Accepts ``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` / torch.Size alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = shape[0]
    return [operator.index(pyval(s)) for s in shape]


def infer_shape(shape, numel: int) -> list:
    """Resolves one -1 in ``shape`` for a tensor of ``numel`` elements."""
    shape = list(shape)
    if shape.count(-1) > 1:
        raise prims.InvalidArgumentError("only one dimension can be inferred (-1)")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or numel % known:
            raise prims.InvalidArgumentError(f"shape {shape} is invalid for input of size {numel}")
        shape[shape.index(-1)] = numel // known
    if math.prod(shape) != numel:
        raise prims.InvalidArgumentError(f"shape {shape} is invalid for input of size {numel}")
    return shape


@torchsymbol(tensor_method("reshape"), torch.reshape, methods=["reshape"])
def reshape(a, *shape):
    shape = infer_shape(_shape_arg(shape), a.numel())
    return a if list(a.shape) == shape else prims.reshape(a, tuple(shape))


@torchsymbol(tensor_method("view"), methods=["view"])
def view(a, *shape):
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise NotImplementedError("Tensor.view(dtype) reinterprets bits")
    return reshape(a, *shape)


@method_only("view_as", "reshape_as")
def view_as(a, other):
    return reshape(a, other.shape)


@torchsymbol(torch.flatten, tensor_method("flatten"), methods=["flatten"])
def flatten(a, start_dim: int = 0, end_dim: int = -1):
    if a.ndim == 0:
        return reshape(a, 1)
    start, end = canonical_dim(start_dim, a.ndim), canonical_dim(end_dim, a.ndim)
    shape = list(a.shape[:start]) + [math.prod(a.shape[start:end + 1])] + list(a.shape[end + 1:])
    return reshape(a, shape)


@torchsymbol(torch.unflatten, tensor_method("unflatten"), methods=["unflatten"])
def unflatten(a, dim: int, sizes):
    dim = canonical_dim(dim, a.ndim)
    sizes = infer_shape([pyval(s) for s in sizes], a.shape[dim])
    return reshape(a, list(a.shape[:dim]) + sizes + list(a.shape[dim + 1:]))


@torchsymbol(tensor_method("permute"), torch.permute, methods=["permute"])
def permute(a, *dims):
    dims = [canonical_dim(d, a.ndim) for d in _shape_arg(dims)]
    return a if dims == list(range(a.ndim)) else prims.transpose(a, tuple(dims))


@torchsymbol(torch.transpose, tensor_method("transpose"), torch.swapaxes, methods=["transpose", "swapaxes"])
def transpose(a, dim0: int, dim1: int):
    if a.ndim == 0:
        return a
    d0, d1 = canonical_dim(dim0, a.ndim), canonical_dim(dim1, a.ndim)
    dims = list(range(a.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(a, dims)


@torchsymbol(torch.t, tensor_method("t"), methods=["t"])
def t(a):
    return transpose(a, 0, 1) if a.ndim == 2 else a


@tensor_property("T")
@torchsymbol(name="T")
def T(a):
    """Tensor.T: reverses all dims (PyTorch deprecates it beyond 2-D but still does that)."""
    return permute(a, list(reversed(range(a.ndim))))


@tensor_property("mT")
@torchsymbol(name="mT")
def mT(a):
    """Tensor.mT: swaps the last two dims (a batch of matrices)."""
    if a.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. Got {a.ndim}-D tensor.")
    return transpose(a, -2, -1)


def _conj(a):
    return opaque_call(torch.conj, (a,), {}) if a.dtype.is_complex else a


@tensor_property("H")
@torchsymbol(name="H")
def H(a):
    """Tensor.H: conjugate transpose of a matrix (or a 0-/1-D tensor's conjugate)."""
    if a.ndim > 2:
        raise RuntimeError(f"tensor.H is only supported on matrices (2-D tensors). Got {a.ndim}-D tensor.")
    return _conj(T(a))


@tensor_property("mH")
@torchsymbol(name="mH")
def mH(a):
    """Tensor.mH: conjugate transpose of a batch of matrices."""
    return _conj(mT(a))


@torchsymbol(torch.unsqueeze, tensor_method("unsqueeze"), methods=["unsqueeze"])
def unsqueeze(a, dim: int):
    dim = canonical_dim(dim, a.ndim + 1)
    shape = list(a.shape)
    shape.insert(dim, 1)
    return prims.broadcast_in_dim(a, tuple(shape), tuple(d for d in range(a.ndim + 1) if d != dim))


@torchsymbol(torch.squeeze, tensor_method("squeeze"), methods=["squeeze"])
def squeeze(a, dim=None):
    if dim is None:
        dims = [i for i, s in enumerate(a.shape) if s == 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else [dim]
        dims = [d for d in (canonical_dim(d, a.ndim) for d in dims) if a.ndim and a.shape[d] == 1]
    return prims.squeeze(a, tuple(sorted(dims))) if dims else a


@torchsymbol(tensor_method("expand"), methods=["expand"])
def expand(a, *shape):
    shape = _shape_arg(shape)
    offset = len(shape) - a.ndim
    if offset < 0:
        raise prims.InvalidArgumentError(f"expand: the number of sizes ({len(shape)}) must be at least the tensor's "
                                         f"dimensions ({a.ndim})")
    shape = [a.shape[i - offset] if s == -1 else s for i, s in enumerate(shape)]
    return broadcast_to(a, shape)


@method_only("expand_as")
def expand_as(a, other):
    return expand(a, other.shape)


@torchsymbol(torch.broadcast_to, tensor_method("broadcast_to"), methods=["broadcast_to"], name="broadcast_to")
def broadcast_to_(a, shape):
    return expand(a, shape)


@torchsymbol(tensor_method("contiguous"), methods=["contiguous"])
def contiguous(a, memory_format=torch.contiguous_format):
    """A new value, not its input: the torch executor's later views depend on the dense layout
    it makes, so it must stay in the trace."""
    return prims.reshape(a, tuple(a.shape))


@torchsymbol(torch.cat, torch.concat, torch.concatenate)
def cat(tensors, dim: int = 0):
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or list(tensors[:1])
    dim = canonical_dim(dim, tensors[0].ndim)
    dtype = result_dtype(*tensors)
    # a piece with nothing along ``dim`` adds nothing (a rotary embedding over the whole head
    # concatenates the empty rest of it): leaving it out spares its gradient too
    def elsewhere(t):
        return tuple(t.shape[:dim]) + tuple(t.shape[dim + 1:])

    reference = next((t for t in tensors if t.shape[dim]), tensors[0])
    tensors = [t for t in tensors if t.shape[dim] or elsewhere(t) != elsewhere(reference)] or tensors[:1]
    return prims.cat([to_dtype(t, dtype) for t in tensors], dim)


@torchsymbol(torch.stack)
def stack(tensors, dim: int = 0):
    dim = canonical_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def _slice_dim(a, dim: int, start: int, stop: int, step: int = 1):
    if start == 0 and stop == a.shape[dim] and step == 1:
        return a
    starts = [0] * a.ndim
    ends = list(a.shape)
    strides = [1] * a.ndim
    starts[dim], ends[dim], strides[dim] = start, stop, step
    return prims.slice(a, tuple(starts), tuple(ends), tuple(strides))


@torchsymbol(torch.narrow, tensor_method("narrow"), methods=["narrow"])
def narrow(a, dim: int, start: int, length: int):
    dim = canonical_dim(dim, a.ndim)
    if isinstance(start, TensorProxy):  # a 0-d tensor start: gather the rows it names
        size = a.shape[dim]
        start = where(lt(start, 0), add(start, size), start)
        index = add(arange(pyval(length), device=a.device), to_dtype(start, torch.int64))
        return prims.take(a, index, dim)
    start = pyval(start) % a.shape[dim] if pyval(start) < 0 else pyval(start)
    return _slice_dim(a, dim, start, start + pyval(length))


@torchsymbol(torch.split, tensor_method("split"), methods=["split"])
def split(a, split_size_or_sections, dim: int = 0):
    dim = canonical_dim(dim, a.ndim)
    size = a.shape[dim]
    if isinstance(split_size_or_sections, (int, NumberProxy)):
        step = pyval(split_size_or_sections)
        sections = [builtins.min(step, size - i) for i in range(0, size, step)] or [0]
    else:
        sections = [pyval(s) for s in split_size_or_sections]
    results, start = [], 0
    for s in sections:
        results.append(_slice_dim(a, dim, start, start + s))
        start += s
    return tuple(results)


@torchsymbol(torch.chunk, tensor_method("chunk"), methods=["chunk"])
def chunk(a, chunks: int, dim: int = 0):
    size = a.shape[canonical_dim(dim, a.ndim)]
    return split(a, builtins.max(1, -(-size // chunks)), dim)


@torchsymbol(torch.unbind, tensor_method("unbind"), methods=["unbind"])
def unbind(a, dim: int = 0):
    dim = canonical_dim(dim, a.ndim)
    return tuple(squeeze(s, dim) for s in split(a, 1, dim))


@torchsymbol(torch.select, tensor_method("select"), methods=["select"])
def select(a, dim: int, index: int):
    dim = canonical_dim(dim, a.ndim)
    index = pyval(index)
    if not -a.shape[dim] <= index < a.shape[dim]:
        raise IndexError(f"index {index} is out of bounds for dimension {dim} with size {a.shape[dim]}")
    index %= a.shape[dim]
    return prims.squeeze(_slice_dim(a, dim, index, index + 1), (dim,))


def _is_basic_index(key) -> bool:
    return key is None or key is Ellipsis or isinstance(key, (int, slice, NumberProxy)) and not isinstance(key, bool)


@torchsymbol(tensor_method("__getitem__"), methods=["__getitem__"])
def getitem(a, key):
    """Basic indexing (ints, slices, None, Ellipsis); tensor indices use advanced indexing."""
    keys = list(key) if isinstance(key, tuple) else [key]
    if not all(_is_basic_index(k) for k in keys):
        # advanced indexing with tensors: through torch, shapes inferred by meta tensors
        return opaque_call(tensor_method("__getitem__"), (a, _known_masks_as_positions(key)), {})
    n_real = sum(1 for k in keys if k is not None and k is not Ellipsis)
    if n_real > a.ndim:
        raise IndexError(f"too many indices for tensor of dimension {a.ndim}")
    if Ellipsis in keys:
        i = keys.index(Ellipsis)
        keys[i:i + 1] = [slice(None)] * (a.ndim - n_real)
    result, dim = a, 0
    for k in keys:
        if k is None:
            result = unsqueeze(result, dim)
            dim += 1
        elif isinstance(k, slice):
            start, stop, step = k.indices(result.shape[dim]) if k != slice(None) else (0, result.shape[dim], 1)
            if step <= 0:
                raise prims.InvalidArgumentError("step must be greater than zero")
            stop = builtins.max(stop, start)
            result = _slice_dim(result, dim, start, stop, step)
            dim += 1
        else:
            result = select(result, dim, k)
    return result


def _known_masks_as_positions(key):
    """``key`` with each boolean index whose values are known while tracing (built from constants)
    replaced by the positions of its True entries, one integer index per dimension: the same
    selection (``x[mask]`` is ``x[mask.nonzero(as_tuple=True)]``), with a shape known now."""
    keys = key if isinstance(key, tuple) else (key,)
    if not any(isinstance(k, TensorProxy) and k.dtype == torch.bool and k.value is not None and k.ndim
               for k in keys):
        return key
    out = []
    for k in keys:
        if isinstance(k, TensorProxy) and k.dtype == torch.bool and k.value is not None and k.ndim:
            out += [opaque_call(torch.tensor, (p.tolist(),), {"dtype": torch.int64, "device": k.device})
                    for p in k.value.nonzero(as_tuple=True)]
        else:
            out.append(k)
    return tuple(out)


@torchsymbol(torch.index_select, tensor_method("index_select"), methods=["index_select"])
def index_select(a, dim: int, index):
    dim = canonical_dim(dim, a.ndim)
    if a.ndim == 0:  # a 0-d tensor acts as one element along dim 0
        return reshape(prims.take(reshape(a, 1), reshape(index, -1), 0), ())
    return prims.take(a, index, dim)


@torchsymbol(torch.gather, tensor_method("gather"), methods=["gather"])
def gather(a, dim: int, index):
    return prims.take_along_axis(a, index, canonical_dim(dim, a.ndim))


@torchsymbol(tensor_method("flip"), torch.flip, methods=["flip"])
def flip(a, *dims, **kwargs):
    """Tensor.flip(0, 1), flip((0, 1)) and flip(dims=(0, 1)) alike."""
    dims = _shape_arg(dims or (kwargs["dims"],))
    return prims.flip(a, tuple(canonical_dim(d, a.ndim) for d in dims))


@torchsymbol(torch.roll, tensor_method("roll"), methods=["roll"])
def roll(a, shifts, dims=None):
    if dims is None:
        return reshape(roll(flatten(a), shifts, 0), a.shape)
    shifts = [shifts] if isinstance(shifts, (int, NumberProxy)) else list(shifts)
    dims = [dims] if isinstance(dims, (int, NumberProxy)) else list(dims)
    result = a
    for shift, dim in zip(shifts, dims):
        dim = canonical_dim(dim, a.ndim)
        size = a.shape[dim]
        if size == 0:
            continue
        shift = pyval(shift) % size
        if shift:
            head = _slice_dim(result, dim, size - shift, size)
            tail = _slice_dim(result, dim, 0, size - shift)
            result = prims.cat([head, tail], dim)
    return result


@torchsymbol(torch.diagonal, tensor_method("diagonal"), methods=["diagonal"])
def diagonal(a, offset: int = 0, dim1: int = 0, dim2: int = 1):
    """The diagonal as a strided slice of the two dims flattened together: element (i, i + offset)
    sits at i * (cols + 1) + offset."""
    d1, d2 = canonical_dim(dim1, a.ndim), canonical_dim(dim2, a.ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    offset = pyval(offset)
    rest = [d for d in range(a.ndim) if d not in (d1, d2)]
    rows, cols = a.shape[d1], a.shape[d2]
    length = builtins.max(0, builtins.min(rows, cols - offset) if offset >= 0 else builtins.min(rows + offset, cols))
    start = offset if offset >= 0 else -offset * cols
    flat = reshape(permute(a, rest + [d1, d2]), [a.shape[d] for d in rest] + [rows * cols])
    if length == 0:
        return _slice_dim(flat, flat.ndim - 1, 0, 0)
    return _slice_dim(flat, flat.ndim - 1, start, start + (length - 1) * (cols + 1) + 1, cols + 1)


@torchsymbol(torch.combinations)
def combinations(a, r: int = 2, with_replacement: bool = False):
    """The index tuples depend only on the length, so they are constants of the program."""
    if a.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(a.shape)}")
    r = pyval(r)
    if r == 0:
        return _slice_dim(a, 0, 0, 0) if a.shape[0] else a
    pick = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    index = [i for combo in pick(range(a.shape[0]), r) for i in combo]
    index = opaque_call(torch.tensor, (index,), {"dtype": torch.int64, "device": a.device})
    return reshape(prims.take(a, index, 0), [-1, r])


@torchsymbol(torch.tril, tensor_method("tril"), methods=["tril"])
def tril(a, diagonal: int = 0):
    rows, cols = a.shape[-2], a.shape[-1]
    row = unsqueeze(arange(rows, device=a.device), -1)
    col = unsqueeze(arange(cols, device=a.device), 0)
    return where(le(sub(col, row), diagonal), a, 0)


@torchsymbol(torch.triu, tensor_method("triu"), methods=["triu"])
def triu(a, diagonal: int = 0):
    rows, cols = a.shape[-2], a.shape[-1]
    row = unsqueeze(arange(rows, device=a.device), -1)
    col = unsqueeze(arange(cols, device=a.device), 0)
    return where(ge(sub(col, row), diagonal), a, 0)


@torchsymbol(torch.nn.functional.pad)
def pad(a, pad, mode: str = "constant", value=None):
    if mode != "constant":
        return opaque_call(torch.nn.functional.pad, (a, pad), {"mode": mode, "value": value})
    pad = [pyval(p) for p in pad]
    config = [(0, 0)] * a.ndim
    for i in range(len(pad) // 2):
        config[a.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return prims.pad(a, 0 if value is None else value, tuple(config))


@method_only("repeat")
def repeat(a, *sizes):
    sizes = _shape_arg(sizes)
    a = reshape(a, [1] * (len(sizes) - a.ndim) + list(a.shape))
    expanded = expand(reshape(a, [d for s in a.shape for d in (1, s)]),
                      [d for r, s in zip(sizes, a.shape) for d in (r, s)])
    return reshape(expanded, [r * s for r, s in zip(sizes, a.shape)])


@torchsymbol(torch.repeat_interleave, tensor_method("repeat_interleave"), methods=["repeat_interleave"])
def repeat_interleave(a, repeats=None, dim=None, *, output_size=None):
    """Each element repeated ``repeats`` times along ``dim``, for an integer ``repeats`` (grouped-query
    attention's key/value expansion): an expand of a new axis, so it fuses. Tensor ``repeats`` has a
    data-dependent size and runs as torch's own op."""
    if repeats is None or not isinstance(pyval(repeats), int):
        return opaque_call(torch.repeat_interleave, (a, repeats), dict(dim=dim, output_size=output_size))
    r = operator.index(pyval(repeats))
    if dim is None:
        a, dim = reshape(a, [-1]), 0
    dim = canonical_dim(dim, a.ndim)
    shape = list(a.shape)
    expanded = expand(unsqueeze(a, dim + 1), shape[:dim + 1] + [r] + shape[dim + 1:])
    return reshape(expanded, shape[:dim] + [shape[dim] * r] + shape[dim + 1:])


@adapts(torch.Size)
def size(sizes=()):
    """``torch.Size(...)`` of known ints is a plain value, not an operation."""
    return torch.Size([operator.index(pyval(s)) for s in sizes])


@adapts(torch._check)
def check(cond, message=None):
    """``torch._check`` of a condition known while tracing is checked then, not recorded."""
    if isinstance(cond, TensorProxy):
        return opaque_call(torch._check, (cond,), {} if message is None else {"message": message})
    if not pyval(cond):
        raise RuntimeError(message() if callable(message) else (message or "Expected cond to be True"))
    return None


# -- more shape ops, written with the ones above ----------------------------------------------------

@torchsymbol(torch.ravel, tensor_method("ravel"), methods=["ravel"])
def ravel(a):
    return reshape(a, -1)


@torchsymbol(torch.movedim, tensor_method("movedim"), torch.moveaxis, methods=["movedim", "moveaxis"])
def movedim(a, source, destination):
    source = [source] if isinstance(source, (int, NumberProxy)) else list(source)
    destination = [destination] if isinstance(destination, (int, NumberProxy)) else list(destination)
    if len(source) != len(destination):
        raise RuntimeError("movedim: Invalid source or destination dims: source and destination must have "
                           "the same number of dims")
    source = [canonical_dim(d, a.ndim) for d in source]
    destination = [canonical_dim(d, a.ndim) for d in destination]
    order = [None] * a.ndim
    for s, d in zip(source, destination):
        order[d] = s
    rest = iter(d for d in range(a.ndim) if d not in source)
    return permute(a, [next(rest) if o is None else o for o in order])


@torchsymbol(torch.fliplr, tensor_method("fliplr"), methods=["fliplr"])
def fliplr(a):
    if a.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(a, 1)


@torchsymbol(torch.flipud, tensor_method("flipud"), methods=["flipud"])
def flipud(a):
    if a.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(a, 0)


@torchsymbol(torch.rot90, tensor_method("rot90"), methods=["rot90"])
def rot90(a, k: int = 1, dims=(0, 1)):
    if len(dims) != 2 or a.ndim < 2:
        raise RuntimeError(f"expected total rotation dims == 2 and total dims >= 2, but got {len(dims)} and {a.ndim}")
    d0, d1 = canonical_dim(dims[0], a.ndim), canonical_dim(dims[1], a.ndim)
    if d0 == d1:
        raise RuntimeError("expected rotation dims to be different")
    k = pyval(k) % 4
    if k == 1:
        return transpose(flip(a, d1), d0, d1)
    if k == 2:
        return flip(a, d0, d1)
    if k == 3:
        return transpose(flip(a, d0), d0, d1)
    return a


def _tensors_arg(tensors):
    return list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else list(tensors)


def _atleast(ndim: int, tensors):
    def one(t):
        if t.ndim >= ndim:
            return t
        if ndim == 3 and t.ndim == 2:
            return unsqueeze(t, -1)
        if ndim == 3 and t.ndim == 1:
            return reshape(t, 1, t.shape[0], 1)
        return reshape(t, [1] * (ndim - t.ndim) + list(t.shape))

    many = len(tensors) != 1 or isinstance(tensors[0], (list, tuple))
    results = tuple(one(t) for t in _tensors_arg(tensors))
    return results if many else results[0]


@torchsymbol(torch.atleast_1d)
def atleast_1d(*tensors):
    return _atleast(1, tensors)


@torchsymbol(torch.atleast_2d)
def atleast_2d(*tensors):
    return _atleast(2, tensors)


@torchsymbol(torch.atleast_3d)
def atleast_3d(*tensors):
    return _atleast(3, tensors)


@torchsymbol(torch.hstack)
def hstack(tensors):
    tensors = atleast_1d(*tensors)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


@torchsymbol(torch.vstack, torch.row_stack)
def vstack(tensors):
    return cat(atleast_2d(*tensors), 0)


@torchsymbol(torch.dstack)
def dstack(tensors):
    return cat(atleast_3d(*tensors), 2)


@torchsymbol(torch.column_stack)
def column_stack(tensors):
    return cat([reshape(t, t.numel(), 1) if t.ndim <= 1 else t for t in tensors], 1)


@torchsymbol(torch.unsafe_split, tensor_method("unsafe_split"), methods=["unsafe_split"])
def unsafe_split(a, split_size, dim: int = 0):
    return split(a, split_size, dim)


@torchsymbol(torch.unsafe_chunk, tensor_method("unsafe_chunk"), methods=["unsafe_chunk"])
def unsafe_chunk(a, chunks: int, dim: int = 0):
    return chunk(a, chunks, dim)


@torchsymbol(torch.split_with_sizes, tensor_method("split_with_sizes"), methods=["split_with_sizes"])
def split_with_sizes(a, split_sizes, dim: int = 0):
    if builtins.sum(pyval(s) for s in split_sizes) != a.shape[canonical_dim(dim, a.ndim)]:
        raise RuntimeError("split_with_sizes expects split_sizes to sum exactly to the dim's size")
    return split(a, list(split_sizes), dim)


@torchsymbol(torch.broadcast_tensors)
def broadcast_tensors(*tensors):
    return tuple(broadcast(*_tensors_arg(tensors)))
