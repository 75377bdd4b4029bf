"""Acquisition without graph breaks: attribute and buffer updates (the epilogue), grad-mode and
autocast regions, in-place ops and views, the eager fallback, sharp-edge reports. Every test
compares the compiled program with eager PyTorch: outputs, gradients and the state left behind."""

import copy
import dataclasses
import logging
import random
import time
import warnings

import pytest
import thunder
import torch
from torch import nn

# -- the epilogue: attribute and buffer updates inside forward -----------------------------------


class Stateful(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.register_buffer("running_mean", torch.zeros(3))
        self.register_buffer("ema", torch.zeros(3))
        self.step = 0
        self.last_batch = None

    def forward(self, x):
        y = self.lin(x)
        self.step += 1
        self.running_mean.mul_(0.9).add_(y.mean(0).detach() * 0.1)  # in place
        self.ema = 0.5 * self.ema + 0.5 * y.mean(0).detach()          # a registered buffer reassigned
        self.cache = y                                                 # a new attribute
        self.last_batch = x.shape[0]
        return y * self.step


def _assert_same_state(a, b):
    assert a.step == b.step
    assert a.last_batch == b.last_batch
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.ema, b.ema)
    assert "ema" in a._buffers and isinstance(a.ema, torch.Tensor)
    torch.testing.assert_close(a.cache, b.cache)
    assert type(a.cache) is torch.Tensor


def test_attribute_and_buffer_updates_match_eager_over_calls():
    eager = Stateful()
    model = copy.deepcopy(eager)
    tm = thunder.compile(model)
    for batch in (2, 2, 5, 2):
        x = torch.randn(batch, 3)
        with torch.no_grad():
            torch.testing.assert_close(tm(x), eager(x))
        _assert_same_state(model, eager)
    assert "_setattr" in str(tm._thunder_compiled.last_entry.epilogue)


class LastShape(nn.Module):
    """No Python value read, only written: cache hits must still replay the store."""

    def forward(self, x):
        self.last = x.shape[0]
        self.seen = x.sum()
        return x * 2


def test_stores_are_replayed_on_cache_hits():
    m = LastShape()
    tm = thunder.compile(m)
    for n in (2, 4, 2, 4):
        x = torch.randn(n)
        tm(x)
        assert m.last == n
        torch.testing.assert_close(m.seen, x.sum())
    assert thunder.cache_misses(tm) == 2 and thunder.cache_hits(tm) == 2


class ReadBack(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = 2.0

    def forward(self, x):
        old = self.scale
        self.scale = self.scale + 1.0   # later reads see the new value, the prologue checks the old
        y = x * self.scale
        if not hasattr(self, "extra"):
            self.extra = 10.0
        return y + old + self.extra


def test_reads_after_a_store_see_it_and_mutated_values_retrace():
    eager, model = ReadBack(), ReadBack()
    tm = thunder.compile(model)
    x = torch.ones(2)
    for _ in range(3):
        torch.testing.assert_close(tm(x), eager(x))
        assert model.scale == eager.scale and model.extra == eager.extra
    assert thunder.cache_misses(tm) == 3  # each call sees a different scale: a new program


def test_stores_to_argument_objects_and_deletes():
    class State:
        pass

    def f(state, x):
        state.total = x.sum()
        state.calls = getattr(state, "calls", 0) + 1
        del state.scratch
        return x + 1

    cf = thunder.compile(f)
    s = State()
    s.scratch = 1
    x = torch.randn(3)
    cf(s, x)
    torch.testing.assert_close(s.total, x.sum())
    assert s.calls == 1 and not hasattr(s, "scratch")


def test_buffer_update_with_gradients():
    eager = Stateful()
    model = copy.deepcopy(eager)
    tm = thunder.compile(model)
    x = torch.randn(4, 3)
    tm(x).sum().backward()
    eager(x).sum().backward()
    _assert_same_state(model, eager)
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


# -- grad mode and autocast regions --------------------------------------------------------------

def _grads_both(fn, *shapes):
    inputs = [torch.randn(s, requires_grad=True) for s in shapes]
    copies = [t.detach().clone().requires_grad_() for t in inputs]
    expected = fn(*inputs)
    actual = thunder.compile(fn)(*copies)
    torch.testing.assert_close(actual, expected)
    assert actual.requires_grad == expected.requires_grad
    expected.sum().backward()
    actual.sum().backward()
    for a, e in zip(copies, inputs):
        torch.testing.assert_close(a.grad, e.grad)
    return actual


def test_no_grad_region_gets_no_gradient():
    def f(x, w):
        with torch.no_grad():
            scale = (x * w).sum()   # a constant for autodiff
            assert not scale.requires_grad
        with torch.enable_grad():
            y = x * 2
        return y * scale + w

    _grads_both(f, (4,), (4,))


def test_values_from_no_grad_do_not_require_grad():
    def f(x):
        with torch.no_grad():
            return x * 2

    y = thunder.compile(f)(torch.randn(3, requires_grad=True))
    assert not y.requires_grad


def test_enable_grad_inside_no_grad_call():
    def f(x):
        with torch.enable_grad():
            return x.sin()

    x = torch.randn(3, requires_grad=True)
    with torch.no_grad():
        y = thunder.compile(f)(x)
    assert y.requires_grad
    y.sum().backward()
    torch.testing.assert_close(x.grad, x.detach().cos())


def autocast_program(x, w, b):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = x @ w                                    # lower precision
        z = torch.nn.functional.linear(y, w, b)      # lower precision
        s = torch.softmax(z, -1) + y                 # bf16 in, bf16 out (CPU list)
        loss = torch.nn.functional.mse_loss(s, x)    # float32 list
    return s, loss, x @ w                            # outside: float32


def test_autocast_region_matches_eager_dtypes_values_and_gradients():
    inputs = [torch.randn(4, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True),
              torch.randn(4, requires_grad=True)]
    copies = [t.detach().clone().requires_grad_() for t in inputs]
    cf = thunder.compile(autocast_program)
    expected, actual = autocast_program(*inputs), cf(*copies)
    assert [t.dtype for t in actual] == [t.dtype for t in expected] == [torch.bfloat16, torch.float32,
                                                                       torch.float32]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-2, rtol=1e-2)
    sum(t.float().sum() for t in expected).backward()
    sum(t.float().sum() for t in actual).backward()
    for a, e in zip(copies, inputs):
        torch.testing.assert_close(a.grad, e.grad, atol=5e-2, rtol=5e-2)
    assert "bfloat16" in str(thunder.last_traces(cf)[0])
    assert not torch.is_autocast_enabled("cpu")


def test_autocast_around_the_compiled_call_is_part_of_the_cache_key():
    lin = nn.Linear(4, 4)
    tm = thunder.compile(lin)
    x = torch.randn(2, 4)
    assert tm(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = tm(x)
        assert y.dtype == torch.bfloat16
        torch.testing.assert_close(y, lin(x))
    assert tm(x).dtype == torch.float32
    assert thunder.cache_misses(tm) == 2


# -- in-place ops and views ----------------------------------------------------------------------

def _inplace_both(fn, *inputs):
    a, b = [t.clone() for t in inputs], [t.clone() for t in inputs]
    expected, actual = fn(*a), thunder.compile(fn)(*b)
    torch.testing.assert_close(actual, expected)
    for x, y in zip(b, a):
        torch.testing.assert_close(x, y)  # inputs mutated exactly as eager mutates them


def test_inplace_on_inputs_and_their_views():
    def add_to_input(x):
        before = x * 2
        x.add_(1)
        return before + x * 3

    def view_of_input(x):
        v = x.view(2, 2)
        v[0] += 1
        v[1].mul_(2)
        x[3:].clamp_(max=0.5)
        return x.cos()

    def copy_into(x, buf):
        buf.copy_(x)
        buf.mul_(2)
        torch.nn.functional.relu(buf, inplace=True)
        return buf.sum()

    _inplace_both(add_to_input, torch.randn(3))
    _inplace_both(view_of_input, torch.randn(4))
    _inplace_both(copy_into, torch.randn(4), torch.zeros(4))


def test_inplace_on_intermediates_with_gradients():
    def f(x):
        y = x * 1
        y[0] = 5
        y.mul_(2)
        return y.sin()

    _grads_both(f, (4,))


def test_successive_inplace_ops_on_an_intermediate_with_gradients():
    """Each in-place operation reads the previous one's result (this once read the first one's)."""
    def f(x, w):
        z = x @ w
        z.add_(1.0)
        z.mul_(x)
        return z.sin()

    _grads_both(f, (4, 4), (4, 4))


def test_inplace_fill_from_a_differentiable_value_makes_the_tensor_need_a_gradient():
    """Llama-4's router: ``full_like(...).scatter_(1, indices, topk_values)``; ``zeros`` then ``add_``."""
    def router(x):
        values, indices = torch.topk(x, 2, dim=1)
        return torch.full_like(x, float("-inf")).scatter_(1, indices, values).sigmoid()

    def accumulate(x, y):
        z = torch.zeros_like(x)
        before = z * 3
        z.add_(y)
        z.mul_(x)
        return z.sin() + before

    _grads_both(router, (4, 5))
    _grads_both(accumulate, (4, 5), (4, 5))


# -- data-dependent control flow: the eager fallback ---------------------------------------------

def routed(x):
    if x.nonzero().shape[0] > 1:      # data-dependent: a shape from values
        return x * 2
    return x - 1


def test_data_dependent_branch_raises_without_fallback():
    with pytest.raises(thunder.DataDependentError, match="nonzero"):
        thunder.compile(routed)(torch.ones(3))


def test_branches_on_values_computed_from_the_inputs_specialize_the_trace():
    """``if x.sum() > 0``, ``range(int(n))``, ``if mask.any().item()``: the value is computed from
    the call's inputs while tracing, and the prologue computes it again: a call where it differs
    gets its own trace, one where it agrees reuses it. Values and gradients as eager."""
    scale = torch.nn.Parameter(torch.tensor(0.5))

    def f(x, n, mask):
        out = x * scale
        if x.float().sum() > 0:  # (a no-op .float(): the value's maker is the input itself)
            out = out * 2
        for _ in range(int(n)):
            out = out + x
        if mask.any().item():
            out = out.relu()
        return out

    compiled = thunder.compile(f)
    calls = [(torch.ones(3), 2, [True, False]), (-torch.ones(3), 2, [True, False]), (torch.ones(3) * 3, 2, [True, False]),
             (torch.ones(3), 1, [False, False]), (-torch.ones(3) * 2, 2, [False, True])]
    for x, n, m in calls:
        x = x.requires_grad_()
        args = (x, torch.tensor(n), torch.tensor(m))
        got, expected = compiled(*args), f(*args)
        torch.testing.assert_close(got, expected)
        for a, b in zip(torch.autograd.grad(got.sum(), [x, scale]), torch.autograd.grad(expected.sum(), [x, scale])):
            torch.testing.assert_close(a, b)
    assert thunder.cache_misses(compiled) == 3 and thunder.cache_hits(compiled) == 2

    def from_random(x):
        return x if torch.rand(()) > 0.5 else -x

    def from_the_whole_model(x):
        for _ in range(70):
            x = x.sin()
        return x if x.sum() > 0 else -x

    def after_a_write_through_a_view(x):
        x.view(-1).add_(-100)  # the prologue would see x as passed, before this write
        return x * 2 if x.sum() > 0 else x

    for fn, why in ((from_random, "random numbers"), (from_the_whole_model, "more than 64 operations"),
                    (after_a_write_through_a_view, "written in place")):
        with pytest.raises(thunder.DataDependentError, match=why):
            thunder.compile(fn)(torch.randn(3))


def test_fallback_eager_runs_eagerly_warns_once_and_caches_the_decision():
    cf = thunder.compile(routed, fallback="eager")
    with pytest.warns(thunder.FallbackWarning, match="nonzero"):
        torch.testing.assert_close(cf(torch.ones(3)), routed(torch.ones(3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x in (torch.ones(3), -torch.ones(3), torch.randn(3)):
            torch.testing.assert_close(cf(x), routed(x))
    assert thunder.cache_misses(cf) == 1  # same path until the branch: no re-acquisition
    cf(torch.ones(5))
    assert thunder.cache_misses(cf) == 2


def test_fallback_keeps_traceable_programs_compiled():
    cf = thunder.compile(lambda x: x * 2, fallback="eager")
    cf(torch.ones(2))
    assert thunder.last_traces(cf)


def test_bad_option_values_are_rejected():
    with pytest.raises(ValueError, match="fallback"):
        thunder.compile(routed, fallback="python")
    with pytest.raises(ValueError, match="sharp_edges"):
        thunder.compile(routed, sharp_edges="yes")


# -- sharp edges ---------------------------------------------------------------------------------

CONFIG = {"scale": 2.0}
LIMIT = 3
_log = logging.getLogger("thunder.test.sharp")


def reads_mutable_global(x):
    return x * CONFIG["scale"] + LIMIT   # LIMIT is a constant (guarded): no report


def does_io(x):
    print("hello from the traced program")
    return x * 2


def reads_clock(x):
    return x * time.time()


def draws_python_random(x):
    return x * random.random()


def logs(x):
    _log.info("shape %s", x.shape)
    return x + 1


@pytest.mark.parametrize("fn, what", [(reads_mutable_global, "CONFIG"), (does_io, "print"),
                                      (reads_clock, "time"), (draws_python_random, "random"),
                                      (logs, "info")])
def test_sharp_edges_warn_and_error(fn, what):
    x = torch.ones(2)
    with pytest.warns(thunder.SharpEdgeWarning, match=what) as record:
        torch.testing.assert_close(thunder.compile(fn, sharp_edges="warn")(x), fn(x), atol=1e10, rtol=0)
    assert "test_acquisition.py" in str(record[0].message)
    with pytest.raises(thunder.SharpEdgeError, match=what):
        thunder.compile(fn, sharp_edges="error")(x)


def test_no_sharp_edges_reported_for_a_plain_module():
    model = nn.Sequential(nn.Linear(3, 3), nn.GELU())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        thunder.compile(model, sharp_edges="error")(torch.randn(2, 3))
        thunder.compile(reads_mutable_global)(torch.ones(2))  # off by default


def test_torch_compile_hints_are_ignored():
    """Model code that marks tensors for torch.compile (HF's Mamba cache calls
    ``torch._dynamo.mark_static_address``) traces as without the hints."""
    def f(x):
        cache = torch.zeros(2, 3)
        torch._dynamo.mark_static_address(cache)
        torch._dynamo.mark_dynamic(x, 0)
        return cache + x * 2

    x = torch.randn(2, 3)
    torch.testing.assert_close(thunder.compile(f)(x), f(x))


def test_tensors_made_outside_torch_reach_opaque_ops_in_containers():
    """A tensor the program gets from code outside torch (here unpickled) handed to torch ops inside
    a list: an input of the trace (not a value the fake-tensor shape inference chokes on)."""
    import pickle

    blob = pickle.dumps([torch.arange(5.0)])

    def f(x):
        tables = pickle.loads(blob)
        return torch.stack([x] + tables), torch.linalg.multi_dot([x[None], tables[0][:, None]])

    x = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5])
    for actual, expected in zip(thunder.compile(f)(x), f(x)):
        torch.testing.assert_close(actual, expected)


@torch.jit.script
def _scripted_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    return torch.sqrt(torch.tensor(x.size(-1), dtype=torch.float) * factor)


def test_torchscript_functions_are_interpreted_from_their_python_source():
    """A @torch.jit.script helper (DeBERTa-v2 has them) receives proxies: Thunder interprets the
    Python function it was made from instead of calling TorchScript with them."""
    def f(x):
        return x / _scripted_scale(x, 2.0)

    cf = thunder.compile(f)
    x = torch.randn(3, 8, requires_grad=True)
    torch.testing.assert_close(cf(x), f(x))
    (g,) = torch.autograd.grad(cf(x).sum(), [x])
    (expected,) = torch.autograd.grad(f(x).sum(), [x])
    torch.testing.assert_close(g, expected)


def test_functional_call_swaps_parameters_in_and_back_without_touching_the_module():
    """torch.func.functional_call stores the given tensors into the module's ``_parameters`` and
    puts the originals back: the compiled call matches eager and leaves the module as it was."""
    lin = nn.Linear(3, 2)
    weight = lin.weight

    def f(x, w):
        return torch.func.functional_call(lin, {"weight": w * 2, "bias": torch.zeros(2)}, (x,)) + lin(x)

    x, w = torch.randn(4, 3), torch.randn(2, 3, requires_grad=True)
    cf = thunder.compile(f)
    actual = cf(x, w)
    assert lin._parameters["weight"] is weight and isinstance(lin.bias, nn.Parameter)
    torch.testing.assert_close(actual, f(x, w))
    (g,) = torch.autograd.grad(cf(x, w).sum(), [w])
    (expected,) = torch.autograd.grad(f(x, w).sum(), [w])
    torch.testing.assert_close(g, expected)


def test_lasting_item_stores_traced_values_error_python_values_as_in_eager():
    cache = {}

    def keeps_a_tensor(x):
        cache["last"] = x * 2
        return x + 1

    with pytest.raises(thunder.UnsupportedOpError, match=r"stores a traced value into .*\['last'\]"):
        thunder.compile(keeps_a_tensor)(torch.ones(2))
    assert "last" not in cache  # nothing traced was left behind

    def counts(x):
        cache["calls"] = cache.get("calls", 0) + 1
        return x * cache["calls"]

    compiled = thunder.compile(counts)
    for calls in (1, 2, 3):  # each call finds the state the previous one left: traced again, as eager runs
        torch.testing.assert_close(compiled(torch.ones(2)), torch.full((2,), float(calls)))
        assert cache["calls"] == calls

    def fills_once(x):
        if "scale" not in cache:
            cache["scale"] = 3.0
        return x * cache["scale"]

    compiled = thunder.compile(fills_once)
    for _ in range(3):
        torch.testing.assert_close(compiled(torch.ones(2)), torch.full((2,), 3.0))
    assert (thunder.cache_misses(compiled), thunder.cache_hits(compiled)) == (2, 1)


@dataclasses.dataclass
class _Output:
    logits: torch.Tensor
    extras: list
    label: str = "out"


@dataclasses.dataclass(frozen=True)
class _Frozen:
    value: torch.Tensor
    scale: float


class _Plain:
    def __init__(self, hidden, note):
        self.hidden, self.note = hidden, note


class _Slotted:
    __slots__ = ("hidden",)

    def __init__(self, hidden):
        self.hidden = hidden


def test_returned_dataclasses_and_objects_hold_this_calls_tensors():
    """pytree treats a dataclass or a plain object as a leaf: the traced object (proxies inside)
    must not be what the caller gets. Each call returns a copy holding that call's tensors, with
    values and gradients as eager; an object Thunder cannot take apart is a clear error."""
    lin = nn.Linear(4, 4)

    def f(x):
        h = lin(x)
        return _Output(h * 2, [h.sum(), _Frozen(h + 1, 0.5)]), _Plain(h.relu(), "kept")

    tf = thunder.compile(f)
    for _ in range(2):
        x = torch.randn(3, 4, requires_grad=True)
        (out, plain), (ref, ref_plain) = tf(x), f(x)
        assert type(out) is _Output and type(out.extras[1]) is _Frozen and type(plain) is _Plain
        assert out.label == "out" and out.extras[1].scale == 0.5 and plain.note == "kept"
        got = [out.logits, out.extras[0], out.extras[1].value, plain.hidden]
        expected = [ref.logits, ref.extras[0], ref.extras[1].value, ref_plain.hidden]
        for a, b in zip(got, expected):
            assert type(a) is torch.Tensor
            torch.testing.assert_close(a, b)
        grads = torch.autograd.grad(sum(t.sum() for t in got), [x, lin.weight])
        ref_grads = torch.autograd.grad(sum(t.sum() for t in expected), [x, lin.weight])
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b)

    x = torch.randn(2)
    slotted = thunder.compile(lambda x: _Slotted(x * 2))(x)
    assert type(slotted.hidden) is torch.Tensor and torch.equal(slotted.hidden, x * 2)

    def returns_closure(x):
        y = x * 2
        return lambda: y

    with pytest.raises(thunder.UnsupportedOpError, match="function holding traced tensors"):
        thunder.compile(returns_closure)(x)
