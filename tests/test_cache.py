"""The prologue is the cache key: hits, misses, and no stale results."""

import pytest
import thunder
import torch
from torch import nn

SCALE = 2.0


def test_same_shape_hits_new_shape_or_dtype_misses_and_stays_correct():
    def f(x, w):
        return torch.tanh(x @ w) * 3

    cf = thunder.compile(f)
    x, w = torch.randn(4, 8), torch.randn(8, 5)
    torch.testing.assert_close(cf(x, w), f(x, w))
    torch.testing.assert_close(cf(x + 1, w), f(x + 1, w))
    assert (thunder.cache_misses(cf), thunder.cache_hits(cf)) == (1, 1)

    x2 = torch.randn(7, 8)
    torch.testing.assert_close(cf(x2, w), f(x2, w))
    assert thunder.cache_misses(cf) == 2
    xd, wd = x.double(), w.double()
    torch.testing.assert_close(cf(xd, wd), f(xd, wd))
    assert thunder.cache_misses(cf) == 3
    cf(x, w)  # the first entry is still there
    assert thunder.cache_misses(cf) == 3


def test_requires_grad_change_misses():
    cf = thunder.compile(lambda x: x * 2)
    x = torch.randn(3)
    cf(x)
    y = cf(x.clone().requires_grad_())
    assert thunder.cache_misses(cf) == 2
    assert y.requires_grad


def test_python_number_arguments_are_guarded():
    def f(x, alpha):
        return x * alpha + alpha

    cf = thunder.compile(f)
    x = torch.randn(5)
    torch.testing.assert_close(cf(x, 2), f(x, 2))
    torch.testing.assert_close(cf(x, 3), f(x, 3))
    torch.testing.assert_close(cf(x, 2.5), f(x, 2.5))
    assert thunder.cache_misses(cf) == 3


def test_global_value_change_is_not_served_stale():
    global SCALE

    def f(x):
        return x * SCALE

    cf = thunder.compile(f)
    x = torch.ones(3)
    torch.testing.assert_close(cf(x), x * 2.0)
    SCALE = 5.0
    try:
        torch.testing.assert_close(cf(x), x * 5.0)
    finally:
        SCALE = 2.0


def test_closure_value_change_is_not_served_stale():
    factor = 2

    def f(x):
        return x * factor

    cf = thunder.compile(f)
    x = torch.ones(3)
    torch.testing.assert_close(cf(x), x * 2)
    factor = 7  # noqa: F841 (read by f through its closure cell)
    torch.testing.assert_close(cf(x), x * 7)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.mode = "double"

    def forward(self, x):
        y = self.lin(x)
        if self.training:
            y = y + 1
        if self.mode == "double":
            return y * 2
        return y * 3


def test_module_attributes_and_training_flag_are_guarded():
    m = Branchy()
    tm = thunder.compile(m)
    x = torch.randn(2, 4)
    torch.testing.assert_close(tm(x), m(x))
    tm.eval()  # the compiled module shares the original's attributes
    assert not m.training
    torch.testing.assert_close(tm(x), m(x))
    m.mode = "triple"
    torch.testing.assert_close(tm(x), m(x))
    assert thunder.cache_misses(tm) == 3


def test_replacing_a_submodule_or_parameter_is_seen():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    tm = thunder.compile(model)
    x = torch.randn(3, 4)
    torch.testing.assert_close(tm(x), model(x))
    model[1] = nn.Tanh()  # shared _modules dict: same change for tm
    torch.testing.assert_close(tm(x), model(x))
    model[0].weight = nn.Parameter(torch.randn(4, 4))
    torch.testing.assert_close(tm(x), model(x))


def test_dtype_change_of_module_retraces():
    model = nn.Linear(4, 2)
    tm = thunder.compile(model)
    x = torch.randn(3, 4)
    tm(x)
    tm.to(torch.float64)
    y = tm(x.double())
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, model(x.double()))


@pytest.mark.parametrize("shape", [(2, 3), (4, 3)])
def test_trace_input_metadata_in_prologue(shape):
    cf = thunder.compile(lambda x: x.sum(0))
    cf(torch.randn(shape))
    assert f"x.shape == {shape}" in thunder.last_prologue(cf)
