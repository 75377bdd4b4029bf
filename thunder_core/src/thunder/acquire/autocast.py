"""``torch.autocast`` regions during acquisition, applied as casts in the trace.

Eager autocast works in the dispatcher: inside a region, ops on a "lower precision" list run on
inputs cast to the region's dtype, ops on a "float32" list on inputs cast up. Running the trace
under the real autocast state would make the trace's dtypes wrong (every proxy would claim
float32), so acquisition *simulates* the autocast state instead (``AutocastState``, which answers
``torch.is_autocast_enabled`` & co. for the program) and, for each top-level torch-language call
made while a region is active, records explicit ``to(dtype)`` casts of its floating-point tensor
arguments. The trace then states exactly what eager computes, autodiff differentiates the casts,
and executors need no autocast support.

The op lists follow PyTorch's (``aten/src/ATen/autocast_mode.cpp``), by device type.
"""

from __future__ import annotations

import torch

from thunder.core.proxies import TensorProxy

_LOWER = {
    "cpu": {"conv1d", "conv2d", "conv3d", "bmm", "mm", "linalg_vecdot", "baddbmm", "addmm", "addbmm", "linear",
            "_convolution", "convolution", "matmul", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
            "conv_transpose3d", "prelu", "scaled_dot_product_attention", "_native_multi_head_attention"},
    "cuda": {"_convolution", "convolution", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d",
             "conv_transpose2d", "conv_transpose3d", "prelu", "addmm", "addmv", "addr", "matmul", "einsum", "mm",
             "mv", "linalg_vecdot", "linear", "addbmm", "baddbmm", "bmm", "chain_matmul", "linalg_multi_dot",
             "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "scaled_dot_product_attention"},
}
_FLOAT32 = {
    "cpu": {"avg_pool3d", "binary_cross_entropy", "grid_sampler", "polar", "prod", "quantile", "nanquantile",
            "stft", "cdist", "trace", "view_as_complex", "cholesky", "cholesky_inverse", "cholesky_solve",
            "inverse", "lu_solve", "orgqr", "ormqr", "pinverse", "max_pool3d", "max_unpool2d", "max_unpool3d",
            "adaptive_avg_pool3d", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
            "replication_pad2d", "replication_pad3d", "mse_loss", "cosine_embedding_loss", "nll_loss",
            "nll_loss2d", "hinge_embedding_loss", "poisson_nll_loss", "smooth_l1_loss", "cross_entropy",
            "cross_entropy_loss", "l1_loss", "huber_loss", "margin_ranking_loss", "soft_margin_loss",
            "triplet_margin_loss", "multi_margin_loss", "ctc_loss", "kl_div", "multilabel_margin_loss",
            "binary_cross_entropy_with_logits"},
    "cuda": {"acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal",
             "rsqrt", "sinh", "tan", "pow", "softplus", "layer_norm", "native_layer_norm", "group_norm",
             "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss", "cosine_embedding_loss",
             "nll_loss", "nll_loss2d", "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss",
             "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss",
             "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist",
             "cdist", "renorm", "logsumexp", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
             "cumprod", "cumsum", "prod", "sum", "softmax", "log_softmax", "norm", "cross_entropy"},
}
_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)  # autocast never casts float64


def _op_name(sym) -> str:
    name = sym.name
    for prefix in ("Tensor_", "nn_functional_", "functional_", "linalg_"):
        if name.startswith(prefix) and name.removeprefix(prefix) in _LOWER["cuda"] | _FLOAT32["cuda"]:
            return name.removeprefix(prefix)
    return name


class AutocastState:
    """The autocast state the program sees while it is acquired (per device type)."""

    def __init__(self):
        self.enabled = {d: torch.is_autocast_enabled(d) for d in ("cpu", "cuda")}
        self.dtype = {d: torch.get_autocast_dtype(d) for d in ("cpu", "cuda")}
        self.initial = (dict(self.enabled), dict(self.dtype))
        self.nesting = 0
        self.cache_enabled = torch.is_autocast_cache_enabled()

    def active(self) -> bool:
        return any(self.enabled.values())

    # -- the torch functions the program calls (autocast.__enter__/__exit__ use these) ----------
    def is_enabled(self, device_type="cuda"):
        return self.enabled.get(str(device_type), False)

    def set_enabled(self, *args):
        device_type, enabled = args if len(args) == 2 else ("cuda", args[0])
        self.enabled[str(device_type)] = bool(enabled)

    def get_dtype(self, device_type):
        return self.dtype.get(str(device_type), torch.bfloat16)

    def set_dtype(self, device_type, dtype):
        self.dtype[str(device_type)] = dtype

    def increment_nesting(self):
        self.nesting += 1
        return self.nesting

    def decrement_nesting(self):
        self.nesting -= 1
        return self.nesting

    def lookasides(self) -> dict:
        state = self

        def set_cache_enabled(enabled):
            state.cache_enabled = enabled

        table = {
            torch.is_autocast_enabled: self.is_enabled,
            torch.set_autocast_enabled: self.set_enabled,
            torch.get_autocast_dtype: self.get_dtype,
            torch.set_autocast_dtype: self.set_dtype,
            torch.autocast_increment_nesting: self.increment_nesting,
            torch.autocast_decrement_nesting: self.decrement_nesting,
            torch.clear_autocast_cache: lambda: None,
            torch.is_autocast_cache_enabled: lambda: state.cache_enabled,
            torch.set_autocast_cache_enabled: set_cache_enabled,
        }
        legacy = {"is_autocast_cpu_enabled": lambda: state.is_enabled("cpu"),
                  "get_autocast_cpu_dtype": lambda: state.get_dtype("cpu"),
                  "get_autocast_gpu_dtype": lambda: state.get_dtype("cuda")}
        for name, fn in legacy.items():
            if hasattr(torch, name):
                table[getattr(torch, name)] = fn
        return table

    # -- the policy ------------------------------------------------------------------------------
    def rewrite_call(self, sym, args, kwargs):
        """Casts the floating-point tensor arguments of a call in an autocast region as eager
        autocast would; returns the (possibly new) args and kwargs."""
        if not self.active() or "autocast" in sym.tags:
            return args, kwargs
        proxies = [a for a in (*args, *kwargs.values()) if isinstance(a, TensorProxy)]
        if not proxies:
            return args, kwargs
        device = proxies[0].device.type
        if not self.enabled.get(device, False):
            return args, kwargs
        name = _op_name(sym)
        if name in _LOWER.get(device, ()):
            target = self.dtype[device]
        elif name in _FLOAT32.get(device, ()):
            target = torch.float32
        else:
            return args, kwargs

        def cast(a):
            if isinstance(a, TensorProxy) and a.dtype in _ELIGIBLE and a.dtype != target:
                return a.to(target)
            if isinstance(a, (list, tuple)) and any(isinstance(x, TensorProxy) for x in a):
                return type(a)(cast(x) for x in a)
            return a

        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    def prologue_guard(self, prologue) -> None:
        """The trace bakes the autocast state it was entered with into its casts."""
        enabled, dtype = self.initial
        if not any(enabled.values()) and hasattr(torch._C, "_is_any_autocast_enabled"):
            # the common case in one call (every compiled call runs this)
            prologue.lines.append("if _is_any_autocast_enabled() and (_is_autocast_enabled('cpu') or "
                                  "_is_autocast_enabled('cuda')): return None")
            prologue.constants["_is_any_autocast_enabled"] = torch._C._is_any_autocast_enabled
        for device in ("cpu", "cuda"):
            if enabled[device]:
                prologue.lines.append(
                    f"if not _is_autocast_enabled({device!r}) or _get_autocast_dtype({device!r}) is not "
                    f"{prologue.constant(dtype[device])}: return None")
            elif any(enabled.values()) or not hasattr(torch._C, "_is_any_autocast_enabled"):
                prologue.lines.append(f"if _is_autocast_enabled({device!r}): return None")
        prologue.constants["_is_autocast_enabled"] = torch.is_autocast_enabled
        prologue.constants["_get_autocast_dtype"] = torch.get_autocast_dtype
