"""The FP8 linear's math, written once for two namespaces of operations.

Every function takes ``T``: either ``EAGER`` (torch functions on real tensors, used by the eager
``autograd.Function`` and as the reference for what the traced version must compute) or the
torch-language namespace of ``thunder_fp8.ops`` (symbols recorded into traces). Writing the
quantization as ordinary elementwise/reduction ops is what lets Thunder's fusion executor fuse the
amax, scale and cast into the neighbouring regions; only the matmul is an FP8-specific symbol.

Scaling conventions (those of ``torch._scaled_mm``): a tensor ``t`` is stored as
``q = fp8(clamp(t * s, -max, max))`` with ``s = max / amax``, and the matmul receives the
*dequantization* scale ``1 / s``, so ``q * (1 / s)`` approximates ``t``.

Recipes:
  ``tensorwise``  dynamic per-tensor scaling: one scale per tensor from its current amax.
  ``delayed``     per-tensor scaling from an amax history (state kept in a module buffer): the scale
                  uses the max of the last ``H`` amaxes; the current amax is then pushed into it.
  ``rowwise``     one scale per row of the left operand and per column of the right operand of each
                  matmul, always taken along the contraction dimension (so outliers stay local).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from thunder_fp8.cast import FP8_MAX, cast_both_layouts

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
AMAX_EPS = 1e-12  # keeps all-zero tensors (fresh gradients, zero-initialised weights) finite
RECIPES = ("tensorwise", "delayed", "rowwise")

# history rows of the ``fp8_amax_history`` buffer of a delayed-scaling layer
ROW_INPUT, ROW_WEIGHT, ROW_GRAD = 0, 1, 2


def scale_from_amax(T, amax, fp8_dtype, margin: int = 0):
    """``max / amax`` in float32, with ``2**-margin`` headroom."""
    amax = T.clamp(T.to(amax, torch.float32), min=AMAX_EPS)
    return T.div(FP8_MAX[fp8_dtype] / 2.0**margin, amax)


def cast(T, t, scale, fp8_dtype):
    """Scales ``t`` (broadcasting ``scale``), saturates to the format's range and casts."""
    m = FP8_MAX[fp8_dtype]
    return T.to(T.clamp(T.mul(T.to(t, torch.float32), scale), -m, m), fp8_dtype)


def abs_max(T, t, dim=None):
    """The amax of ``t`` (a 0-d tensor), or along ``dim`` with the dimension kept.

    The whole tensor's amax is taken as the max of its rows' amaxes: a reduction along the last
    dimension iterates like the elementwise code that produces ``t``, so the fusion executor
    computes it in the producer's kernel, which also writes ``t`` (one pass over the producer's
    inputs instead of one to reduce and another to write; the SwiGLU backward's gradients of a
    16-layer Llama step: two kernels, 4.9 ms -> one, 3.3 ms on an H200). Max is exact: the value
    is the one reduction's."""
    a = T.abs(t)
    if dim is not None:
        return T.amax(a, dim, keepdim=True)
    return T.amax(T.amax(a, -1)) if len(t.shape) > 1 else T.amax(a)


def dynamic_scale(T, t, fp8_dtype, dim=None, margin: int = 0):
    """Dynamic scaling: ``(scale, amax)`` from ``t``'s current amax; ``dim`` is the dimension
    reduced for a row-wise (per-row or per-column) scale, None for one scale per tensor."""
    amax = abs_max(T, t, dim)
    return scale_from_amax(T, amax, fp8_dtype, margin), amax


def delayed_scale(T, t, fp8_dtype, history, row: int, margin: int):
    """Delayed scaling: ``(scale, current amax)``, the scale from the max of ``history[row]``; a
    history with no amax yet (the first step) falls back to the current amax. The row's max is
    taken from the max of every row (a fresh tensor, not a view of the history), so that only
    ``record_amax`` touches the history: see ``thunder_fp8.passes``."""
    amax = abs_max(T, t)
    past = T.select(T.amax(history, 1), 0, row)
    used = T.where(T.gt(past, 0.0), past, T.to(amax, torch.float32))
    return scale_from_amax(T, used, fp8_dtype, margin), amax


def quantize(T, t, fp8_dtype, dim=None, margin: int = 0):
    """Dynamic scaling: ``(q, 1/scale, amax)``."""
    scale, amax = dynamic_scale(T, t, fp8_dtype, dim, margin)
    return cast(T, t, scale, fp8_dtype), T.reciprocal(scale), amax


def cast_for_backward(T, t, scale, fp8_dtype, transposed_too: bool):
    """``(q, q.T contiguous)`` written in one pass when the backward needs the transpose
    (``transposed_too``), else ``(q, None)``."""
    if transposed_too:
        return T.cast_both_layouts(t, scale, fp8_dtype)
    return cast(T, t, scale, fp8_dtype), None


def linear_forward(T, x, weight, bias, history, recipe: str, margin: int, grad_dtype, out_dtype, emulate: bool,
                   need_input_grad: bool = False, need_weight_grad: bool = False):
    """``x @ weight.T + bias`` with both operands in e4m3 (and, for ``delayed``, the current amaxes
    pushed into ``history``), accumulated with the fast FP8 accumulation (the forward's choice in
    torchao and TransformerEngine; the backward's matmuls accumulate exactly). Returns
    ``(out, saved)``: for the per-tensor recipes ``saved`` is ``(x_inv, w_inv, xq_t, wq_t)``, the
    dequantization scales of x and the weight and, where a gradient needs them (``need_*_grad``),
    the transposed FP8 copies (``xq_t`` for the weight gradient, ``wq_t`` for the input gradient),
    written by the same pass as the forward's operands, so the backward neither reduces nor casts
    x or the weight again; empty for ``rowwise``, whose backward scales along other axes."""
    n, k = weight.shape
    x2 = T.reshape(x, (-1, k))
    if recipe == "rowwise":
        xq, xs, _ = quantize(T, x2, E4M3, dim=1)
        wq, ws, _ = quantize(T, weight, E4M3, dim=1)  # per output channel: [N, 1]
        out = T.scaled_mm(xq, T.transpose(wq, 0, 1), xs, T.transpose(ws, 0, 1), out_dtype, True, emulate)
        saved = ()
    else:
        if recipe == "delayed":
            x_scale, x_amax = delayed_scale(T, x2, E4M3, history, ROW_INPUT, margin)
            w_scale, w_amax = delayed_scale(T, weight, E4M3, history, ROW_WEIGHT, margin)
        else:
            x_scale, _ = dynamic_scale(T, x2, E4M3)
            w_scale, _ = dynamic_scale(T, weight, E4M3)
        xq, xq_t = cast_for_backward(T, x2, x_scale, E4M3, need_weight_grad)
        wq, wq_t = cast_for_backward(T, weight, w_scale, E4M3, need_input_grad)
        x_inv, w_inv = T.reciprocal(x_scale), T.reciprocal(w_scale)
        out = T.scaled_mm(xq, T.transpose(wq, 0, 1), x_inv, w_inv, out_dtype, True, emulate)
        if recipe == "delayed":
            T.record_amax(history, ROW_INPUT, x_amax)
            T.record_amax(history, ROW_WEIGHT, w_amax)
        saved = (x_inv, w_inv, xq_t, wq_t)
    if bias is not None:
        out = T.add(out, T.to(bias, out_dtype))
    return T.reshape(out, (*x.shape[:-1], n)), saved


def linear_backward(T, g, x, weight, saved, history, recipe: str, margin: int, grad_dtype, emulate: bool,
                    need_input: bool, need_weight: bool, need_bias: bool):
    """Gradients of ``linear_forward`` for input, weight and bias: the two backward matmuls take the
    output gradient in ``grad_dtype`` (e5m2 by default: range matters more than precision for
    gradients) and the forward operands in e4m3: for the per-tensor recipes the FP8 values the
    forward multiplied, in the transposed layouts ``saved`` holds (the forward saved them for the
    gradients that were needed then, which are the ones asked for here). For ``delayed`` the
    gradient's amax is pushed into the history's gradient row."""
    n, k = weight.shape
    g2 = T.reshape(g, (-1, n))
    dx = dw = db = None
    if recipe == "rowwise":
        x2 = T.reshape(x, (-1, k))
        if need_input:  # [M, N] @ [N, K]: rows of g, columns of weight
            gq, gs, _ = quantize(T, g2, grad_dtype, dim=1)
            wq, ws, _ = quantize(T, weight, E4M3, dim=0)
            dx = T.scaled_mm(gq, wq, gs, ws, x.dtype, False, emulate)
        if need_weight:  # [N, M] @ [M, K]: rows of g.T, columns of x
            gtq, gts, _ = quantize(T, T.transpose(g2, 0, 1), grad_dtype, dim=1)
            xq, xs, _ = quantize(T, x2, E4M3, dim=0)
            dw = T.scaled_mm(gtq, xq, gts, xs, weight.dtype, False, emulate)
    else:
        if recipe == "delayed":
            g_scale, g_amax = delayed_scale(T, g2, grad_dtype, history, ROW_GRAD, margin)
        else:
            g_scale, _ = dynamic_scale(T, g2, grad_dtype)
        gq, gq_t = cast_for_backward(T, g2, g_scale, grad_dtype, need_input and need_weight)
        gs = T.reciprocal(g_scale)
        x_inv, w_inv, xq_t, wq_t = saved
        if need_input:  # [M, N] @ [N, K]: the weight's transpose, read as a column-major [N, K]
            dx = T.scaled_mm(gq, T.transpose(wq_t, 0, 1), gs, w_inv, x.dtype, False, emulate)
        if need_weight:  # [N, M] @ [M, K]: both contract over the tokens
            gq_t = gq_t if gq_t is not None else T.transpose(gq, 0, 1)
            dw = T.scaled_mm(gq_t, T.transpose(xq_t, 0, 1), gs, x_inv, weight.dtype, False, emulate)
        if recipe == "delayed":
            T.record_amax(history, ROW_GRAD, g_amax)
    if dx is not None:
        dx = T.reshape(dx, tuple(x.shape))
    if need_bias:
        db = T.sum(g2, 0)
    return dx, dw, db


# -- the eager namespace ---------------------------------------------------------------------------

def _pad_to(t, dim: int, multiple: int = 16, value: float = 0.0):
    extra = -t.shape[dim] % multiple
    if extra == 0:
        return t
    pad_shape = list(t.shape)
    pad_shape[dim] = extra
    return torch.cat([t, torch.full(pad_shape, value, dtype=t.dtype, device=t.device)], dim)


def _pad_fp8(t, dim: int):
    """Zero-pads an FP8 tensor (torch.cat has no FP8 kernels on some devices: pad as bytes)."""
    if t.shape[dim] % 16 == 0:
        return t
    return _pad_to(t.view(torch.uint8), dim).view(t.dtype)


def scaled_mm(a, b, scale_a, scale_b, out_dtype, fast_accum: bool, emulate: bool):
    """``(a * scale_a) @ (b * scale_b)`` in ``out_dtype``; ``a`` is [M, K] and ``b`` [K, N] in FP8,
    scales are 0-d (per tensor) or [M, 1] / [1, N] (row-wise) float32.

    ``emulate``: multiply the FP8 values in float32 and scale the product (any device; the numerics
    of the FP8 kernel up to accumulation order: FP8 values are exact in float32, and in TF32 too,
    so the product does not depend on the matmul precision setting). Otherwise ``torch._scaled_mm``
    (CUDA, compute capability >= 8.9), with the layouts it requires (``a`` row-major, ``b``
    column-major) and every dimension padded with zeros to a multiple of 16; ``fast_accum`` selects
    Hopper's faster, less precise FP8 accumulation (ignored by the emulation)."""
    if emulate:
        with torch.autocast(a.device.type, enabled=False):  # float32 means float32 under autocast too
            out = torch.matmul(a.float(), b.float()) * (scale_a.float() * scale_b.float())
        return out.to(out_dtype)
    m, n = a.shape[0], b.shape[1]
    rowwise = scale_a.numel() > 1 or scale_b.numel() > 1
    if rowwise:
        scale_a = _pad_to(scale_a.float().reshape(-1, 1).expand(m, 1), 0, value=1.0).contiguous()
        scale_b = _pad_to(scale_b.float().reshape(1, -1).expand(1, n), 1, value=1.0).contiguous()
    else:
        scale_a, scale_b = scale_a.float().reshape(()), scale_b.float().reshape(())
    a = _pad_fp8(_pad_fp8(a, 1), 0).contiguous()
    b = _pad_fp8(_pad_fp8(b, 0), 1)
    if b.stride(0) != 1:  # column-major: the transpose of a contiguous [N, K]
        b = b.t().contiguous().t()
    # row-wise scaling kernels write bf16 only
    kernel_dtype = torch.bfloat16 if rowwise and out_dtype != torch.bfloat16 else out_dtype
    out = torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=kernel_dtype, use_fast_accum=fast_accum)
    if isinstance(out, tuple):  # older torch returned (out, amax)
        out = out[0]
    out = out[:m, :n]
    return out if kernel_dtype == out_dtype else out.to(out_dtype)


def record_amax(history, row: int, amax):
    """Pushes ``amax`` at the front of ``history[row]`` (dropping the oldest), in place; returns
    ``amax`` so that the trace has a value to name."""
    h = history[row]
    h.copy_(torch.cat((amax.reshape(1).to(h.dtype), h[:-1])))  # two launches (roll + item write took three)
    return amax


def record_amaxes(histories, rows, amaxes) -> None:
    """``record_amax`` for many histories at once, in a handful of kernels whatever their number
    (a 16-layer model records 160 amaxes per training step): the rows are gathered, shifted and
    written back together, per group of rows of one dtype, length and device."""
    groups: dict[tuple, list] = {}
    for history, row, amax in zip(histories, rows, amaxes):
        h = history[row]
        groups.setdefault((h.dtype, h.shape[0], h.device), []).append((h, amax))
    for pairs in groups.values():
        rows_now = torch.stack([h for h, _ in pairs])
        fresh = torch.stack([a.reshape(()) for _, a in pairs]).to(rows_now.dtype)
        shifted = torch.cat((fresh[:, None], rows_now[:, :-1]), dim=1)
        torch._foreach_copy_([h for h, _ in pairs], list(shifted.unbind(0)))


EAGER = SimpleNamespace(
    abs=torch.abs, amax=torch.amax, clamp=torch.clamp, mul=torch.mul, div=torch.div, add=torch.add,
    reciprocal=torch.reciprocal, where=torch.where, gt=torch.gt, select=torch.select, sum=torch.sum,
    reshape=torch.reshape, transpose=torch.transpose, to=lambda t, dtype: t.to(dtype),
    scaled_mm=scaled_mm, record_amax=record_amax, cast_both_layouts=cast_both_layouts,
)
