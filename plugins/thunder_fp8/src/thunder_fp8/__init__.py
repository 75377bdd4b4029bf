"""thunder-fp8: FP8 training of linear layers for Thunder.

    tm = thunder.compile(model, plugins=["fp8"])                         # defaults
    tm = thunder.compile(model, plugins=[thunder_fp8.FP8(recipe="delayed")])
    tm = thunder.compile(model, plugins=[thunder_fp8.FP8(emulate=True)])  # CPU numerics

The plugin converts the chosen ``nn.Linear`` layers (module transform), maps their call to the
``fp8.linear`` symbol (lookaside) with a VJP rule, and contributes the ``fp8`` executor that runs
``fp8.scaled_mm`` with ``torch._scaled_mm``. See README.md.
"""

from __future__ import annotations

from thunder.plugins import hookimpl

from thunder_fp8.module import FP8Config, FP8Linear, convert_to_fp8
from thunder_fp8.ops import FP8UnsupportedError, executor, fp8_linear, fp8_supported, traced_fp8_linear
from thunder_fp8.passes import sink_amax_records

__all__ = ["FP8", "FP8Config", "FP8Linear", "FP8UnsupportedError", "convert_to_fp8", "executor", "fp8_linear",
           "fp8_supported"]


class FP8:
    """The plugin (entry point ``fp8``). Options:

    recipe:       "tensorwise" (dynamic per-tensor, default), "delayed" (amax history, state in the
                  ``fp8_amax_history`` buffer of each layer) or "rowwise"
    emulate:      quantize with the same scaling and multiply the FP8 values in float32 instead of
                  ``torch._scaled_mm``: runs anywhere (CPU tests); without it, devices without FP8
                  support are an error when the program is compiled
    history_len, margin:  delayed scaling's amax history length and ``2**-margin`` headroom
    grad_dtype:   FP8 format of output gradients (default e5m2; e4m3 for row-wise)
    skip, include: fnmatch patterns on module names (``skip`` also matches the last name part;
                  default skips ``lm_head``); ``module_types``: the classes converted (nn.Linear);
    filter_fn:    ``(name, module) -> bool``, a final say. Layers whose in/out features are not
                  multiples of 16 are never converted.
    """

    def __init__(self, recipe: str = "tensorwise", *, emulate: bool = False, history_len: int = 16,
                 margin: int = 0, grad_dtype=None, skip=("lm_head",), include=("*",), module_types=None,
                 filter_fn=None):
        kwargs = {} if module_types is None else {"module_types": tuple(module_types)}
        self.config = FP8Config(recipe=recipe, emulate=emulate, history_len=history_len, margin=margin,
                                grad_dtype=grad_dtype, skip=tuple(skip), include=tuple(include),
                                filter_fn=filter_fn, **kwargs)
        self.converted: list[str] = []

    def __repr__(self) -> str:
        return f"FP8({self.config.recipe!r}, emulate={self.config.emulate})"

    @hookimpl
    def thunder_transform_module(self, module, options):
        self.converted = convert_to_fp8(module, self.config)

    @hookimpl
    def thunder_lookasides(self, options):
        return {fp8_linear: traced_fp8_linear}

    @hookimpl
    def thunder_executors(self, options):
        return [executor]

    @hookimpl
    def thunder_transform_trace(self, trace, stage, options):
        if stage == "claimed" and self.config.recipe == "delayed":
            return sink_amax_records(trace)
        return None
