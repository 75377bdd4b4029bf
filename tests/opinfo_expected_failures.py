"""The OpInfo tests Thunder is known to fail, with the reason for each: the one place they are
listed. ``test_opinfo.py`` marks these as strict xfails, so a fix shows up as an unexpected pass
and the entry must then be removed.

Keys are OpInfo ids (``name`` or ``name.variant_test_name``); each value is (reason, the tests it
fails). A test is ``"forward"`` (both forward tests), ``"forward_prims"`` (only the decomposed one)
or ``"grad"``, optionally narrowed to one dtype as ``"forward:bfloat16"``.
"""

from __future__ import annotations

# reasons
DATA_DEPENDENT = "data-dependent output shape: raises DataDependentError naming the op"
RANDOM = "random op: values differ from eager"
SPARSE = "sparse tensors are not supported (no meta/fake kernel; proxies are strided)"

BF16_ROUNDING = ("bfloat16: the decomposition rounds the product before scaling and adding, eager rounds "
                 "once (full mode only)")

FORWARD, GRAD = "forward", "grad"

EXPECTED_FAILURES: dict[str, tuple[str, set[str]]] = {
    # values decide the output's shape
    "masked_select": (DATA_DEPENDENT, {FORWARD, GRAD}),
    "nonzero": (DATA_DEPENDENT, {FORWARD}),
    "argwhere": (DATA_DEPENDENT, {FORWARD}),
    "unique": (DATA_DEPENDENT, {FORWARD}),
    "unique_consecutive": (DATA_DEPENDENT, {FORWARD}),
    "bincount": (DATA_DEPENDENT + " (the largest value sets the length)", {FORWARD}),
    "nn.functional.one_hot": (DATA_DEPENDENT + " (num_classes=-1: the largest value sets it)", {FORWARD}),
    "tensor_split": (DATA_DEPENDENT + " (split points given as a tensor)", {FORWARD, GRAD}),
    "linalg.lstsq": (DATA_DEPENDENT + " (residuals exist only for full-rank inputs)", {FORWARD, GRAD}),
    "linalg.lstsq.grad_oriented": (DATA_DEPENDENT + " (residuals exist only for full-rank inputs)",
                                   {FORWARD, GRAD}),
    # layouts
    "sparse.sampled_addmm": (SPARSE, {FORWARD, GRAD}),
    "sparse.mm.reduce": (SPARSE, {FORWARD, GRAD}),
    # numerics
    "addbmm": (BF16_ROUNDING, {"forward_prims:bfloat16"}),
    "baddbmm": (BF16_ROUNDING, {"forward_prims:bfloat16", "grad:bfloat16"}),
    "addr": (BF16_ROUNDING, {"forward_prims:bfloat16"}),
    # core
}


def expected_failure(op: str, test: str, dtype) -> str | None:
    """The reason ``test`` ("forward", "forward_prims" or "grad") of ``op`` at ``dtype`` is expected to fail."""
    entry = EXPECTED_FAILURES.get(op)
    if entry is None:
        return None
    reason, tests = entry
    dtype_name = str(dtype).removeprefix("torch.")
    kinds = (test, "forward") if test == "forward_prims" else (test,)
    return reason if any(k in tests or f"{k}:{dtype_name}" in tests for k in kinds) else None
