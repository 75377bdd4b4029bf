"""The OpInfo tests Thunder is known to fail, with the reason for each: the one place they are
listed. ``test_opinfo.py`` marks these as strict xfails, so a fix shows up as an unexpected pass
and the entry must then be removed.

Keys are OpInfo ids (``name`` or ``name.variant_test_name``); each value is (reason, the tests it
fails). A test is ``"forward"`` (both forward tests) or ``"grad"``, optionally narrowed to one
dtype as ``"forward:bfloat16"``.
"""

from __future__ import annotations

# reasons
DATA_DEPENDENT = "data-dependent output shape"
RANDOM = "random op: values differ from eager"

FORWARD, GRAD = "forward", "grad"

EXPECTED_FAILURES: dict[str, tuple[str, set[str]]] = {
}


def expected_failure(op: str, test: str, dtype) -> str | None:
    """The reason ``test`` ("forward" or "grad") of ``op`` at ``dtype`` is expected to fail."""
    entry = EXPECTED_FAILURES.get(op)
    if entry is None:
        return None
    reason, tests = entry
    dtype_name = str(dtype).removeprefix("torch.")
    return reason if test in tests or f"{test}:{dtype_name}" in tests else None
