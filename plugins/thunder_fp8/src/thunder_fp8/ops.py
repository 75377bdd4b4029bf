"""The FP8 linear as Thunder symbols, its VJP rule, its executor, and its eager version.

``fp8_linear(...)`` is what a converted ``nn.Linear`` calls. Eagerly it is an
``autograd.Function``; while Thunder acquires a program, the plugin's lookaside replaces it by the
symbol ``fp8.linear``, whose decomposition is ``scaling.linear_forward`` written in
torch-language ops plus three FP8 symbols:

- ``fp8.scaled_mm``: the FP8 matmul (a primitive: only the ``fp8`` executor runs it, through
  ``torch._scaled_mm`` or, in emulation mode, by dequantizing);
- ``fp8.cast_both_layouts``: an FP8 cast that also writes the transposed copy a backward matmul
  needs, in the same pass (``thunder_fp8.cast``);
- ``fp8.record_amax``: pushes an amax into a delayed-scaling history, in place (tagged
  ``side_effect`` so dead-code elimination keeps it).

Nobody claims ``fp8.linear`` itself, so the claim pass decomposes it: the amax/scale/cast ops go to
the torch executor and from there into the fusion executor's regions (fused with the producer of
the activation); the matmuls and the two-layout casts are registered ``traceable``, so they join
those regions too.
Autodiff keeps ``fp8.linear`` whole because it has a VJP rule (registered here), which records
``scaling.linear_backward``: the backward matmuls are ``fp8.scaled_mm`` too.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from thunder.core.proxies import TensorProxy
from thunder.core.symbol import Symbol
from thunder.executors import OperatorExecutor
from thunder.torch import ALL as L
from thunder.transforms.autodiff.rules import vjp

from thunder_fp8 import scaling
from thunder_fp8.cast import cast_both_layouts

namespace = SimpleNamespace()  # what ``fp8`` names in printed traces (the executor's implementations)


class FP8UnsupportedError(RuntimeError):
    """FP8 matmuls were requested where they cannot run (and emulation was not asked for)."""


def fp8_supported(device) -> bool:
    """``torch._scaled_mm`` needs a CUDA device of compute capability 8.9 (Ada) or newer."""
    device = torch.device(device)
    return (device.type == "cuda" and torch.cuda.is_available() and hasattr(torch, "_scaled_mm")
            and torch.cuda.get_device_capability(device) >= (8, 9))


def check_device(device, emulate: bool) -> None:
    if emulate or fp8_supported(device):
        return
    device = torch.device(device)
    where = (f"a CUDA device of compute capability {torch.cuda.get_device_capability(device)}"
             if device.type == "cuda" and torch.cuda.is_available() else f"device {device}")
    raise FP8UnsupportedError(
        f"thunder-fp8: FP8 matmuls (torch._scaled_mm) need a CUDA GPU of compute capability >= 8.9 "
        f"(Ada, Hopper, Blackwell), but the layer's weight is on {where}. Move the model to such a "
        f"GPU, or use FP8(emulate=True) to quantize-dequantize with the same scaling (for numerics "
        f"testing on any device; not faster).")


def autocast_inputs(x, weight, bias):
    """What autocast does to ``F.linear``'s operands: inside an enabled region they are cast to the
    region's dtype (and the output has it). Eager calls apply it here; during acquisition Thunder's
    autocast simulation records the same casts for ``fp8.linear`` (a "linear" on its lower-precision
    list), so FP8 layers compose with ``torch.autocast`` either way."""
    device_type = torch.device(weight.device).type
    if not torch.is_autocast_enabled(device_type):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device_type)
    cast = lambda t: t.to(dtype) if t is not None and t.dtype in (torch.float32, torch.float16, torch.bfloat16) else t
    return cast(x), cast(weight), cast(bias)


# -- symbols ---------------------------------------------------------------------------------------

def _scaled_mm_meta(a, b, scale_a, scale_b, out_dtype, fast_accum, emulate):
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"fp8.scaled_mm: shapes {list(a.shape)} and {list(b.shape)} do not multiply")
    requires_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    return TensorProxy((a.shape[0], b.shape[1]), out_dtype, a.device, requires_grad)


def _record_amax_meta(history, row, amax):
    return TensorProxy(tuple(amax.shape), amax.dtype, amax.device, False)


def _cast_both_layouts_meta(t, scale, fp8_dtype):
    if t.ndim != 2:
        raise ValueError(f"fp8.cast_both_layouts: expected a 2-D tensor, got shape {list(t.shape)}")
    m, n = t.shape
    requires_grad = torch.is_grad_enabled() and t.requires_grad  # as the cast it stands for
    return (TensorProxy((m, n), fp8_dtype, t.device, requires_grad),
            TensorProxy((n, m), fp8_dtype, t.device, requires_grad))


scaled_mm_symbol = Symbol("scaled_mm", _scaled_mm_meta, module="fp8", is_prim=True, module_object=namespace)
record_amax_symbol = Symbol("record_amax", _record_amax_meta, module="fp8", is_prim=True,
                            module_object=namespace, tags=("side_effect",))
cast_both_layouts_symbol = Symbol("cast_both_layouts", _cast_both_layouts_meta, module="fp8", is_prim=True,
                                  module_object=namespace)

# the torch-language namespace ``scaling`` computes with while a trace is recorded
TRACED = SimpleNamespace(
    abs=L["abs"], amax=L["amax"], clamp=L["clamp"], mul=L["mul"], div=L["div"], add=L["add"],
    reciprocal=L["reciprocal"], where=L["where"], gt=L["gt"], select=L["select"], sum=L["sum"],
    reshape=L["reshape"], transpose=L["transpose"], to=L["to"],
    scaled_mm=scaled_mm_symbol, record_amax=record_amax_symbol, cast_both_layouts=cast_both_layouts_symbol,
)


def _linear_decomposition(input, weight, bias, history, recipe, margin, grad_dtype, emulate):
    """``(out, *saved)``: what ``scaling.linear_forward`` saves for the backward is output too, so
    that the VJP rule can reuse it (a converted layer's caller sees ``out`` only)."""
    grad = torch.is_grad_enabled()
    # the output dtype is the input's: under autocast the input arrives already cast
    out, saved = scaling.linear_forward(TRACED, input, weight, bias, history, recipe, margin, grad_dtype,
                                        input.dtype, emulate, grad and input.requires_grad,
                                        grad and weight.requires_grad)
    return (out, *saved)


linear_symbol = Symbol("linear", _linear_decomposition, module="fp8", module_object=namespace)


@vjp("fp8.linear")
def _linear_vjp(ctx, input, weight, bias, history, recipe, margin, grad_dtype, emulate):
    need_bias = isinstance(bias, TensorProxy) and bias.requires_grad
    dx, dw, db = scaling.linear_backward(TRACED, ctx.g[0], input, weight, ctx.out[1:], history, recipe, margin,
                                         grad_dtype, emulate, input.requires_grad, weight.requires_grad, need_bias)
    return dx, dw, db, None, None, None, None, None


# -- the executor ----------------------------------------------------------------------------------

namespace.scaled_mm = scaling.scaled_mm
namespace.record_amax = scaling.record_amax
namespace.cast_both_layouts = cast_both_layouts
executor = OperatorExecutor("fp8", priority=50)
# torch operations only (``torch._scaled_mm``, the layout copies it needs, the custom cast), so the
# fusion executor compiles them inside its regions, next to the ops that feed them
executor.register("fp8.scaled_mm", namespace.scaled_mm, printed_as=("fp8", "scaled_mm", namespace), traceable=True)
executor.register("fp8.cast_both_layouts", namespace.cast_both_layouts,
                  printed_as=("fp8", "cast_both_layouts", namespace), traceable=True)
executor.register("fp8.record_amax", namespace.record_amax, printed_as=("fp8", "record_amax", namespace))
# what ``thunder_fp8.passes`` turns the records at the end of a trace into (claimed already)
namespace.record_amaxes = scaling.record_amaxes
record_amaxes_symbol = executor.register("fp8.record_amaxes", namespace.record_amaxes,
                                         printed_as=("fp8", "record_amaxes", namespace))
record_amaxes_symbol.tags = (*record_amaxes_symbol.tags, "side_effect")


# -- the function converted layers call ------------------------------------------------------------

class _FP8Linear(torch.autograd.Function):
    """Eager execution of the same math (a converted layer called outside ``thunder.compile``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, history, recipe, margin, grad_dtype, out_dtype, emulate):
        with torch.no_grad():
            out, saved = scaling.linear_forward(scaling.EAGER, x, weight, bias, history, recipe, margin,
                                                grad_dtype, out_dtype, emulate, *ctx.needs_input_grad[:2])
        ctx.save_for_backward(x, weight, history, *saved)
        ctx.config = (recipe, margin, grad_dtype, emulate, bias is not None)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight, history, *saved = ctx.saved_tensors
        recipe, margin, grad_dtype, emulate, has_bias = ctx.config
        dx, dw, db = scaling.linear_backward(scaling.EAGER, g, x, weight, saved, history, recipe, margin,
                                             grad_dtype, emulate, ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                                             has_bias and ctx.needs_input_grad[2])
        return dx, dw, db, None, None, None, None, None, None


def fp8_linear(x, weight, bias, history, recipe: str, margin: int, grad_dtype, emulate: bool):
    """``F.linear(x, weight, bias)`` with FP8 matmuls (``recipe`` as in ``thunder_fp8.scaling``)."""
    check_device(weight.device, emulate)
    x, weight, bias = autocast_inputs(x, weight, bias)
    with torch.autocast(torch.device(weight.device).type, enabled=False):
        return _FP8Linear.apply(x, weight, bias, history, recipe, margin, grad_dtype, x.dtype, emulate)


def traced_fp8_linear(x, weight, bias, history, recipe: str, margin: int, grad_dtype, emulate: bool):
    """The lookaside for ``fp8_linear`` during acquisition: records ``fp8.linear``. Unsupported
    devices fail here, i.e. when the program is compiled."""
    check_device(weight.device, emulate)
    return linear_symbol(x, weight, bias, history, recipe, margin, grad_dtype, emulate)[0]
