"""``torch.vmap`` during acquisition, for elementwise functions of batched scalars.

Libraries build masks by vmapping an elementwise predicate over index ranges (Hugging Face's
attention masks vmap ``mask(batch_idx, head_idx, q_idx, kv_idx)`` four times). For such a
function, vmapping equals broadcasting: give each vmapped level its own axis, shape each batched
argument to lie along its level's axis, and call the function once. ``torch.vmap`` is replaced by
``Vmapped`` objects; calling the outermost one flattens the nest of levels and does exactly that.

Anything else (batched arguments that are not 1-D ranges of scalars, ``out_dims`` other than 0)
is rejected with an error rather than computed wrongly.
"""

from __future__ import annotations

from thunder.core.errors import UnsupportedOpError
from thunder.core.proxies import TensorProxy


class Vmapped:
    """What ``torch.vmap(fn, in_dims, out_dims)`` returns while a program is acquired."""

    def __init__(self, run, fn, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
        self.run = run  # calls a Python function the way acquisition does (interpreted)
        self.fn = fn
        self.in_dims = in_dims
        self.out_dims = out_dims

    def __call__(self, *args):
        levels, fn = [], self
        while isinstance(fn, Vmapped):
            if fn.out_dims != 0:
                raise UnsupportedOpError("torch.vmap with out_dims other than 0 is not supported")
            dims = fn.in_dims if isinstance(fn.in_dims, tuple) else (fn.in_dims,) * len(args)
            levels.append(dims)
            fn = fn.fn
        sizes = []
        shaped = list(args)
        for level, dims in enumerate(levels):
            batched = [i for i, d in enumerate(dims) if d is not None]
            size = None
            for i in batched:
                a = args[i]
                if not isinstance(a, TensorProxy) or a.ndim != 1 or dims[i] not in (0, -1):
                    raise UnsupportedOpError(
                        "torch.vmap is supported for elementwise functions of 1-D index ranges (as "
                        "attention-mask builders use); got a batched argument that is not a 1-D tensor")
                size = a.shape[0]
                shape = [1] * len(levels)
                shape[level] = size
                shaped[i] = a.reshape(shape)
            sizes.append(size if size is not None else 1)
        out = self.run(fn, shaped)
        if not isinstance(out, TensorProxy):
            raise UnsupportedOpError("torch.vmap of a function that does not return one tensor")
        if tuple(out.shape) != tuple(sizes):
            out = out.expand(sizes)
        return out
