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


def test_in_place_writes_keep_what_they_may_change_apart():
    """Values a write may change are neither merged nor read across the write; the rest of such a
    trace is still deduplicated."""
    def f(x, buf):
        a = x.sin() * 2
        b = x.sin() * 2          # a repeat of values no write touches: computed once
        c = buf.sum()
        buf.mul_(2)
        d = buf.sum()            # the same expression, read after a write: computed again
        e = x + 1
        g = x + 1
        e.mul_(2)                # g must not see this
        v = buf.view(2, 2)[0].repeat(2)
        h = buf.float().to(buf.dtype) + v  # a cast round trip of a written tensor stays
        buf.add_(1)
        return a + b, c, d, e, g, h

    compiled = thunder.compile(f)
    x = torch.randn(4)
    buf, expected_buf = torch.arange(4.0, dtype=torch.bfloat16), torch.arange(4.0, dtype=torch.bfloat16)
    for actual, expected in zip(compiled(x, buf), f(x, expected_buf)):
        torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(buf, expected_buf)
    source = str(thunder.last_traces(compiled)[-1])
    assert source.count("torch.sin(") == 1 and source.count("torch.sum(") == 2


def _backward_matching_eager(f, *inputs):
    """Compiles ``f``, checks its inputs' gradients against eager's, returns the backward trace."""
    compiled = thunder.compile(f)
    g = torch.randn_like(f(*inputs))
    compiled(*inputs).backward(g)
    actual = [x.grad for x in inputs]
    for x in inputs:
        x.grad = None
    f(*inputs).backward(g)
    for a, x in zip(actual, inputs):
        torch.testing.assert_close(a, x.grad)
    return thunder.last_backward_traces(compiled)[-1]


def test_backward_computes_each_chain_rule_term_once():
    """The chain rule writes some terms once per path: ``x * x`` contributes ``g * x`` twice and
    each use of a cast gets a cast back. The backward trace merges them; gradients stay eager's."""
    def rms_norm(x, w):
        xf = x.float()
        normed = xf * torch.rsqrt((xf * xf).mean(-1, keepdim=True) + 1e-6)
        return (normed * w.float()).to(x.dtype)

    x = torch.randn(4, 16, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(16, dtype=torch.bfloat16, requires_grad=True)
    backward = _backward_matching_eager(rms_norm, x, w)
    computations = [(b.sym.id, repr(b.args), repr(b.kwargs)) for b in backward.bound_symbols
                    if b.flat_proxy_outputs()]
    assert len(computations) == len(set(computations))


def test_cast_round_trips_through_a_wider_type_are_the_value_they_started_from():
    """``bf16 -> f32 -> bf16`` changes nothing. A bf16 addition computes in float32, so its
    gradient rule casts the incoming bf16 gradient up and back down for each operand: the backward
    reads the gradient itself instead."""
    def f(x, y):
        return (x + y).sin()

    x, y = (torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    backward = _backward_matching_eager(f, x, y)
    casts = {b.output.name: b for b in backward.bound_symbols if b.sym.id.endswith("convert_element_type")}
    # up and back down (down and back up rounds: it stays)
    round_trips = [b for b in casts.values() if getattr(b.args[0], "name", None) in casts
                   and casts[b.args[0].name].args[0].dtype == b.args[1]
                   and b.args[0].dtype.itemsize > b.args[1].itemsize]
    assert not round_trips, backward
