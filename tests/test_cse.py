"""Common-subexpression elimination: repeats computed once, never across randomness, no_grad
regions or in-place modification; values and gradients as eager."""

import thunder
import torch
import torch.nn.functional as F


def _stage(compiled, name):
    return next(t for t in thunder.last_traces(compiled) if t.stage == name)


def test_repeated_computation_is_computed_once_and_gradients_match():
    def f(x, w):
        a = F.linear(x, w).relu()
        b = F.linear(x, w).relu()  # the same value
        with torch.no_grad():
            c = F.linear(x, w)  # the same op, but needs no gradient: kept
        return a + b + c, torch.rand(3), torch.rand(3)  # two draws: kept

    compiled = thunder.compile(f)
    x, w = torch.randn(2, 4), torch.randn(3, 4, requires_grad=True)
    torch.manual_seed(0)
    actual = compiled(x, w)
    torch.manual_seed(0)
    expected = f(x, w)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)
    actual[0].sum().backward()
    grad, w.grad = w.grad, None
    expected[0].sum().backward()
    torch.testing.assert_close(grad, w.grad)
    cse = str(_stage(compiled, "common subexpressions eliminated"))
    assert cse.count("ltorch.linear(") == 2 and cse.count("ltorch.relu(") == 1 and cse.count("ltorch.rand(") == 2


def test_traces_that_modify_tensors_in_place_are_left_alone():
    def f(x):
        a = x + 1
        b = x + 1
        a.mul_(2)  # b must not see this
        return a, b

    compiled = thunder.compile(f)
    x = torch.randn(4)
    for actual, expected in zip(compiled(x), f(x)):
        torch.testing.assert_close(actual, expected)
