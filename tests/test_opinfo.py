"""Every operator of PyTorch's OpInfo database, compiled with Thunder and compared against eager.

For each OpInfo of ``op_db`` that supports the dtype on CPU, ``op.op`` is compiled with
``thunder.compile`` (without a retrace limit: every sample is traced) and run on the op's sample inputs:

- ``test_forward``: outputs (values, dtypes, shapes, non-tensor results) match eager, as users get
  them (the torch executor runs each torch-language op as the torch callable it came from);
- ``test_forward_prims``: the same with every torch-language op decomposed into primitives (what a
  fusion executor or an executor claiming primitives runs), which checks the decompositions;
- ``test_grad``: gradients of a weighted sum of the outputs with respect to the tensor inputs
  match eager's, for ops that support autograd.

Random ops are run under the same ``torch.manual_seed`` in eager and in Thunder; the compiled call
is also run twice to check that it is reproducible.

By default the suite uses float32 and the first ``SAMPLES`` samples of each op, so it runs in a few
minutes; an op that does not support float32 (bitwise ops, ``one_hot``) runs in its own dtype (int64,
complex64...). ``THUNDER_OPINFO_FULL=1`` uses every sample and the dtypes float32, float64, bfloat16 and
int64 (a nightly run). Known failures are listed in ``opinfo_expected_failures.py`` and are
strict xfails: fixing one makes its test fail until it is removed from that list.
"""

from __future__ import annotations

import itertools
import os

import pytest
import thunder
import torch
from opinfo_expected_failures import expected_failure
from thunder import prims
from thunder.executors.base import OperatorExecutor
from thunder.executors.torchex import torch_executor
from torch.utils._pytree import tree_flatten, tree_map

pytest.importorskip("expecttest", reason="PyTorch's OpInfo database needs the expecttest package")
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

FULL = os.environ.get("THUNDER_OPINFO_FULL") == "1"
SAMPLES = None if FULL else 3
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.int64) if FULL else (torch.float32,)
if os.environ.get("THUNDER_OPINFO_DTYPES"):  # e.g. "float32,bfloat16"
    DTYPES = tuple(getattr(torch, d) for d in os.environ["THUNDER_OPINFO_DTYPES"].split(","))
# THUNDER_OPINFO_DEVICE=cuda runs the suite on the GPU (scripts/gpu_run.sh opinfo). There each op
# runs through the operator executors only: an Inductor compile per op would take hours, and
# fusion is covered by the model tests. The expected failures are the CPU ones.
DEVICE = os.environ.get("THUNDER_OPINFO_DEVICE", "cpu")
EXECUTORS = None if DEVICE == "cpu" else ["sdpa", "torch"]


def op_id(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def _native_dtype(supported):
    """For an op that supports none of the suite's dtypes (bitwise ops, one_hot, view_as_real):
    the dtype it is tested in instead, so every OpInfo is exercised."""
    for dtype in (torch.int64, torch.complex64, torch.bool):
        if dtype in supported:
            return dtype
    return min(supported, key=str) if supported else None


def _cases(dtypes, *, grad: bool = False, test: str = "forward"):
    cases = []
    for op in op_db:
        supported = op.supported_backward_dtypes(DEVICE) if grad else op.supported_dtypes(DEVICE)
        if grad and not op.supports_autograd:
            continue
        chosen = [d for d in dtypes if d in supported]
        if not chosen and _native_dtype(supported) is not None:
            chosen = [_native_dtype(supported)]
        for dtype in chosen:
            marks = []
            reason = expected_failure(op_id(op), "grad" if grad else test, dtype)
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True))
            cases.append(pytest.param(op, dtype, id=f"{op_id(op)}-{str(dtype).removeprefix('torch.')}",
                                      marks=marks))
    return cases


def _prims_executor() -> OperatorExecutor:
    """An executor running every primitive with the torch executor's implementation. Placed above
    the torch executor it makes the claim pass decompose every torch-language op into prims."""
    ex = OperatorExecutor("prims_only", priority=0)
    for name, sym in prims.ALL.items():
        impl = torch_executor._implementations[sym.id][0].impl
        ex.register(sym.id, impl)
    return ex


PRIMS_EXECUTOR = _prims_executor()


def _samples(op, dtype, requires_grad: bool):
    return list(itertools.islice(op.sample_inputs(DEVICE, dtype, requires_grad=requires_grad), SAMPLES))


def _clone(x):
    """A fresh copy of a sample's tensor with its storage, offset and strides (``as_strided``
    samples depend on them), as a leaf keeping requires_grad, so eager and Thunder runs cannot see
    each other's in-place changes."""
    if not isinstance(x, torch.Tensor) or x.layout != torch.strided:
        return x
    if x.is_conj() or x.is_neg():
        return x.detach().clone().requires_grad_(x.requires_grad)
    with torch.no_grad():
        copy = torch.empty((0,), dtype=x.dtype, device=x.device)
        copy.set_(x.untyped_storage().clone(), x.storage_offset(), x.shape, x.stride())
    return copy.requires_grad_(x.requires_grad)


def _call_args(sample):
    args, kwargs = tree_map(_clone, ((sample.input, *sample.args), dict(sample.kwargs)))
    return args, kwargs


def _run(fn, args, kwargs, seed: int = 1234):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def _assert_same(actual, expected, *, rtol=None, atol=None, values=True):
    a_flat, a_spec = tree_flatten(actual)
    e_flat, e_spec = tree_flatten(expected)
    assert a_spec == e_spec, f"output structure differs: {a_spec} vs {e_spec}"
    for a, e in zip(a_flat, e_flat):
        if isinstance(e, torch.Tensor):
            assert isinstance(a, torch.Tensor), f"expected a tensor, got {type(a).__name__}"
            if values:
                torch.testing.assert_close(a, e, equal_nan=True, rtol=rtol, atol=atol)
            else:
                assert (a.shape, a.dtype, a.device) == (e.shape, e.dtype, e.device)
        else:
            assert type(a) is type(e) and (a == e or a != a and e != e), f"{a!r} != {e!r}"


def _tolerances(dtype):
    """Decompositions may round differently from torch's fused kernels."""
    if dtype == torch.float32:
        return dict(rtol=1e-4, atol=1e-5)
    if dtype == torch.bfloat16:
        return dict(rtol=2e-2, atol=1e-2)
    return dict(rtol=None, atol=None)


# ops whose results are uninitialized memory: only their metadata is compared
UNDEFINED_VALUES = {"empty", "empty_like", "empty_permuted", "empty_strided", "new_empty", "new_empty_strided"}


def _check_forward(op, dtype, executors=None, tolerances=None):
    fn = thunder.compile(lambda *a, **k: op.op(*a, **k), executors=executors or EXECUTORS, retrace_limit=None)
    values = op.name not in UNDEFINED_VALUES
    for sample in _samples(op, dtype, requires_grad=False):
        try:
            expected = _run(op.op, *_call_args(sample))
        except Exception:  # an invalid sample (or a CUDA-only op): Thunder must raise too
            with pytest.raises(Exception):
                _run(fn, *_call_args(sample))
            continue
        actual = _run(fn, *_call_args(sample))
        try:
            _assert_same(actual, expected, values=values, **(tolerances or {}))
        except AssertionError:
            if not tolerances or dtype == torch.float64:
                raise
            # a decomposition summing in another order: as accurate as eager against float64?
            reference = _run(op.op, *_call_args(sample.transform(_float64)))
            _as_accurate(actual, expected, reference, tolerances)
        again = _run(fn, *_call_args(sample))
        _assert_same(again, actual, rtol=0, atol=0, values=values)


@pytest.mark.parametrize("op, dtype", _cases(DTYPES))
def test_forward(op, dtype):
    _check_forward(op, dtype)


@pytest.mark.parametrize("op, dtype", _cases(DTYPES, test="forward_prims"))
def test_forward_prims(op, dtype):
    _check_forward(op, dtype, executors=[PRIMS_EXECUTOR], tolerances=_tolerances(dtype))


def _differentiable_leaves(tree):
    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor) and x.requires_grad]


def _weighted_sum(outputs):
    """A scalar depending on every differentiable output, with fixed random weights (a plain sum
    would have zero gradient through ops like softmax)."""
    total = 0
    for i, out in enumerate(_differentiable_leaves(outputs)):
        real = torch.view_as_real(out.resolve_conj()) if out.is_complex() else out
        g = torch.Generator().manual_seed(i)
        weight = torch.randn(real.shape, generator=g, dtype=real.dtype).to(real.device)
        total = total + (real * weight).sum()
    return total


def _grads(fn, sample, output_process_fn):
    args, kwargs = _call_args(sample)
    inputs = _differentiable_leaves((args, kwargs))
    outputs = output_process_fn(_run(fn, args, kwargs))
    loss = _weighted_sum(outputs)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return [None] * len(inputs)
    return list(torch.autograd.grad(loss, inputs, allow_unused=True))


def _float64(x):
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        return x.detach().double().requires_grad_(x.requires_grad)
    return x


def _as_accurate(actual, expected, reference, tolerances):
    """Where Thunder and eager disagree, decides against a float64 run of eager: Thunder passes if
    it is within tolerance of it, or at least as close to it as eager is (eager's own rounding,
    amplified by an ill-conditioned op, is not Thunder's error)."""
    for a, e, r in zip(tree_flatten(actual)[0], tree_flatten(expected)[0], tree_flatten(reference)[0]):
        if not isinstance(a, torch.Tensor):
            continue
        r = r.to(a.dtype)
        try:
            torch.testing.assert_close(a, r, equal_nan=True, **tolerances)
            continue
        except AssertionError:
            pass
        finite = torch.isfinite(r)
        error_thunder = (a - r)[finite].abs().max().item() if finite.any() else 0.0
        error_eager = (e - r)[finite].abs().max().item() if finite.any() else 0.0
        assert error_thunder <= error_eager, (
            f"Thunder's result is off from float64 by {error_thunder}, eager's by {error_eager}")


def _grads_filled(fn, sample):
    grads = _grads(fn, sample, sample.output_process_fn_grad)
    return [torch.zeros_like(x) if g is None else g
            for g, x in zip(grads, _differentiable_leaves(_call_args(sample)))]


@pytest.mark.parametrize("op, dtype", _cases(DTYPES, grad=True))
def test_grad(op, dtype):
    fn = thunder.compile(lambda *a, **k: op.op(*a, **k), executors=EXECUTORS, retrace_limit=None)
    for sample in _samples(op, dtype, requires_grad=True):
        expected = _grads_filled(op.op, sample)
        actual = _grads_filled(fn, sample)
        try:
            _assert_same(actual, expected, **_tolerances(dtype))
        except AssertionError:
            if dtype == torch.float64:
                raise
            reference = _grads_filled(op.op, sample.transform(_float64))
            _as_accurate(actual, expected, reference, _tolerances(dtype))


class _Tally:
    """A pytest plugin counting, per test kind, the OpInfos that pass: in float32, and over all of
    op_db (in its own dtype where an op does not support float32)."""

    def __init__(self):
        self.outcomes: dict[str, dict[str, dict[str, str]]] = {}  # test kind -> op id -> dtype -> outcome

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        name, _, param = report.nodeid.partition("::")[2].partition("[")
        op, _, dtype = param.rstrip("]").rpartition("-")
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        self.outcomes.setdefault(name, {}).setdefault(op, {})[dtype] = outcome

    def summary(self) -> str:
        lines = []
        for name, ops in self.outcomes.items():
            total = sum(op.supports_autograd for op in op_db) if name == "test_grad" else len(op_db)
            f32 = {op: d["float32"] for op, d in ops.items() if "float32" in d}
            own = {op: d.get("float32", next(iter(d.values()))) for op, d in ops.items()}
            passed32 = sum(o == "passed" for o in f32.values())
            passed = sum(o == "passed" for o in own.values())
            lines.append(f"{name}: float32 {passed32}/{len(f32)} ({100 * passed32 / len(f32):.1f}%); "
                         f"all {passed}/{total} OpInfos{' with autograd' if name == 'test_grad' else ''} "
                         f"({100 * passed / total:.1f}%); xfailed {sum(o == 'xfailed' for o in own.values())}, "
                         f"failed {sum(o == 'failed' for o in own.values())}")
            failed = sorted(f"{op}-{dt}" for op, d in ops.items() for dt, o in d.items() if o == "failed")
            if failed:
                lines.append(f"  failed: {', '.join(failed)}")
        return "\n".join(lines)


if __name__ == "__main__":
    # python tests/test_opinfo.py [pytest args]: runs the suite and prints the pass rates
    import sys

    tally = _Tally()
    code = pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-W", "ignore", "--tb=line", *sys.argv[1:]],
                       plugins=[tally])
    print(tally.summary())
    sys.exit(code)
