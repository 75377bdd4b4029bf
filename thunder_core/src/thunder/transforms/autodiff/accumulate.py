"""The gradient of each forward value, summed over its uses, while the backward is recorded.

A value used several times gets one gradient per use, and its gradient is their sum. The sum is
taken only when the value's own rule asks for it, so the terms can be seen together. The gradient
of a slice is zero outside the slice (``ZeroPadded``); the slices of one value often tile it (a
split's outputs, the two halves of rotary embedding's rotate-half). Summed as zero-padded tensors
they cost a masked read of every piece for every element, and Inductor tends to materialize the
pieces; placed side by side they are one concatenation, which is also what eager's autograd builds.
"""

from __future__ import annotations

from thunder import prims
from thunder.core.proxies import TensorProxy
from thunder.torch import ALL as L
from thunder.torch.promotion import to_dtype


class ZeroPadded:
    """A gradient that is ``value`` surrounded by zeros: ``padding`` holds a (low, high) pair per
    dim. Rules return it for slicing; it is padded only when summed (``Gradients.get``)."""

    __slots__ = ("value", "padding")

    def __init__(self, value: TensorProxy, padding):
        self.value = value
        self.padding = tuple(tuple(p) for p in padding)

    @property
    def shape(self) -> tuple:
        return tuple(lo + s + hi for s, (lo, hi) in zip(self.value.shape, self.padding))

    def padded_dim(self) -> int | None:
        """The one dim with zeros around the value, or None (none, or several)."""
        dims = [d for d, p in enumerate(self.padding) if p != (0, 0)]
        return dims[0] if len(dims) == 1 else None

    def materialize(self) -> TensorProxy:
        if all(p == (0, 0) for p in self.padding):
            return self.value
        return prims.pad(self.value, 0.0, self.padding)


class Gradients:
    """Per forward value (by name), the gradients of its uses recorded so far."""

    def __init__(self):
        self.terms: dict[str, list] = {}

    def add(self, p, g) -> None:
        if g is None or not (isinstance(p, TensorProxy) and p.requires_grad):
            return
        if tuple(g.shape) != tuple(p.shape):
            raise AssertionError(f"gradient of {p.name} has shape {list(g.shape)}, expected {list(p.shape)}")
        if isinstance(g, ZeroPadded):
            g = ZeroPadded(to_dtype(g.value, p.dtype), g.padding)
        else:
            g = to_dtype(g, p.dtype)
        self.terms.setdefault(p.name, []).append(g)

    def get(self, p):
        """The summed gradient of ``p``, or None if none arrived."""
        terms = self.terms.get(p.name)
        if terms is None:
            return None
        if len(terms) > 1 or isinstance(terms[0], ZeroPadded):
            terms[:] = [_sum(terms)]
        return terms[0]


def _sum(terms: list) -> TensorProxy:
    dense = [t for t in terms if not isinstance(t, ZeroPadded)]
    padded = [t for t in terms if isinstance(t, ZeroPadded)]
    # a piece with no elements is all zeros: it adds nothing (unless it is all there is)
    nonempty = [t for t in padded if 0 not in t.value.shape]
    if nonempty or dense:
        padded = nonempty
    by_dim: dict[int | None, list[ZeroPadded]] = {}
    for t in padded:
        by_dim.setdefault(t.padded_dim(), []).append(t)
    for dim, pieces in by_dim.items():
        dense += [t.materialize() for t in pieces] if dim is None else _side_by_side(pieces, dim)
    total = dense[0]
    for t in dense[1:]:
        total = L["add"](total, t)
    return total


def _side_by_side(pieces: list[ZeroPadded], dim: int) -> list[TensorProxy]:
    """Pieces padded along ``dim`` alone: those that do not overlap as one concatenation (zeros
    between them, padding around), any overlapping ones padded on their own."""
    pieces = sorted(pieces, key=lambda t: t.padding[dim][0])
    row, overlapping, end = [], [], 0
    for t in pieces:
        start = t.padding[dim][0]
        if start >= end:
            row.append(t)
            end = start + t.value.shape[dim]
        else:
            overlapping.append(t.materialize())
    if len(row) == 1:
        return [row[0].materialize()] + overlapping
    parts, cursor = [], row[0].padding[dim][0]
    for t in row:
        start = t.padding[dim][0]
        if start > cursor:
            gap = list(t.value.shape)
            gap[dim] = start - cursor
            parts.append(prims.full(tuple(gap), 0, t.value.dtype, t.value.device))
        parts.append(t.value)
        cursor = start + t.value.shape[dim]
    joined = L["cat"](parts, dim)
    low, high = row[0].padding[dim][0], row[0].shape[dim] - cursor
    if low or high:
        joined = prims.pad(joined, 0.0, tuple((low, high) if d == dim else (0, 0) for d in range(joined.ndim)))
    return [joined] + overlapping
