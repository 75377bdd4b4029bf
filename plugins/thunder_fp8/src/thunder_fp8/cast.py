"""The FP8 cast that writes both layouts in one pass: ``thunder_fp8::cast_both_layouts``.

``torch._scaled_mm`` multiplies a row-major left operand by a column-major right one: both must be
contiguous along the contraction dimension. A linear's backward contracts over other dimensions
than its forward: the weight gradient multiplies the output gradient and the input along the
token dimension, so each of them is needed in FP8 in both layouts (row-major for one matmul, its
transpose for the other), and so is the weight. Casting once and copying the transpose reads the
source twice; compiled as elementwise code next to its producer, the cast is recomputed from the
producer's inputs in every kernel that writes one layout. This operation reads the source once
and writes ``q = fp8(clamp(t * scale))`` and ``q.T`` (contiguous) together.

A torch custom operation, so that a ``torch.compile`` region materializes its input once and
launches one kernel rather than fusing the cast into elementwise code. On CUDA with Triton
installed it is one Triton kernel over 2-D tiles (the transposed tile goes through shared memory,
so both stores are coalesced); elsewhere torch operations compute the same values.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch version below serves every device
    triton = None

FP8_MAX = {torch.float8_e4m3fn: float(torch.finfo(torch.float8_e4m3fn).max),
           torch.float8_e5m2: float(torch.finfo(torch.float8_e5m2).max)}


NAME = "thunder_fp8::cast_both_layouts"


def _cast_with_torch(t, scale, fp8_dtype):
    m = FP8_MAX[fp8_dtype]
    q = (t.float() * scale).clamp(-m, m).to(fp8_dtype).contiguous()
    return q, q.t().clone(memory_format=torch.contiguous_format)  # a copy even where q.t() is contiguous


if triton is not None:
    @triton.jit
    def _cast_kernel(t_ptr, scale_ptr, q_ptr, qt_ptr, M, N, stride_m, stride_n, FP8_LIMIT: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        inside = (rows[:, None] < M) & (cols[None, :] < N)
        x = tl.load(t_ptr + rows[:, None] * stride_m + cols[None, :] * stride_n, mask=inside).to(tl.float32)
        y = x * tl.load(scale_ptr)
        # clamp as torch.clamp does: a NaN stays NaN
        y = tl.minimum(tl.maximum(y, -FP8_LIMIT, propagate_nan=tl.PropagateNan.ALL), FP8_LIMIT,
                       propagate_nan=tl.PropagateNan.ALL)
        q = y.to(q_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
        tl.store(q_ptr + rows[:, None] * N + cols[None, :], q, mask=inside)
        tl.store(qt_ptr + cols[:, None] * M + rows[None, :], tl.trans(q), mask=tl.trans(inside))


def _cast_with_triton(t, scale, fp8_dtype, launch):
    """``launch(kernel)[grid](...)``: ``launch`` is ``torch.library.wrap_triton`` inside a
    ``triton_op`` (so that torch.compile sees the kernel), the identity elsewhere."""
    m, n = t.shape
    q = t.new_empty((m, n), dtype=fp8_dtype)
    qt = t.new_empty((n, m), dtype=fp8_dtype)
    if q.numel():
        block_m, block_n = 64, 128  # of the tiles tried on the H200, within 3% of the best for each shape
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
        launch(_cast_kernel)[grid](t, scale.float().reshape(()), q, qt, m, n, t.stride(0), t.stride(1),
                                   FP8_LIMIT=FP8_MAX[fp8_dtype], BLOCK_M=block_m, BLOCK_N=block_n, num_warps=8)
    return q, qt


if triton is not None and hasattr(torch.library, "triton_op"):
    # torch >= 2.6: a torch.compile region traces into the operation and launches the kernel from
    # its generated code, without a Python dispatch per call (hundreds of calls per training step)
    @torch.library.triton_op(NAME, mutates_args=())
    def cast_both_layouts(t: torch.Tensor, scale: torch.Tensor,
                          fp8_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, q.t().contiguous())`` for ``q = fp8(clamp(t * scale, -max, max))``; ``t`` is
        2-D, ``scale`` a float32 scalar tensor."""
        if t.device.type != "cuda":
            return _cast_with_torch(t, scale, fp8_dtype)
        return _cast_with_triton(t, scale, fp8_dtype, torch.library.wrap_triton)
else:
    @torch.library.custom_op(NAME, mutates_args=())
    def cast_both_layouts(t: torch.Tensor, scale: torch.Tensor,
                          fp8_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, q.t().contiguous())`` for ``q = fp8(clamp(t * scale, -max, max))``; ``t`` is
        2-D, ``scale`` a float32 scalar tensor."""
        return _cast_with_torch(t, scale, fp8_dtype)

    @cast_both_layouts.register_fake
    def _(t, scale, fp8_dtype):
        return t.new_empty(t.shape, dtype=fp8_dtype), t.new_empty((t.shape[1], t.shape[0]), dtype=fp8_dtype)

    if triton is not None:
        @cast_both_layouts.register_kernel("cuda")
        def _(t, scale, fp8_dtype):
            return _cast_with_triton(t, scale, fp8_dtype, lambda kernel: kernel)
