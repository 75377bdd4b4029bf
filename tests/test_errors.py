"""Bad input gets a clear error naming the cause and the user's line."""

import pytest
import thunder
import torch


def test_data_dependent_op_names_the_op_and_the_line():
    def f(x):
        return torch.nonzero(x)  # the line the error must name

    with pytest.raises(thunder.DataDependentError) as info:
        thunder.compile(f)(torch.randn(4))
    text = "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])
    assert "torch.nonzero" in text
    assert "test_errors.py" in text and "return torch.nonzero(x)" in text


def test_branching_on_a_random_value_explains_the_fix():
    """A branch on a value computed from the inputs is traced (``test_acquisition``); one on a
    random draw cannot be computed again in the prologue: the error names why and the line."""
    def f(x):
        if torch.rand(()) + x.sum() > 0:
            return x
        return -x

    with pytest.raises(thunder.DataDependentError) as info:
        thunder.compile(f)(torch.randn(4))
    text = "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])
    assert "torch.where" in text and "random numbers" in text
    assert "if torch.rand(()) + x.sum() > 0" in text


def test_shape_errors_are_reported_like_torch():
    def f(x, y):
        return x @ y

    with pytest.raises(ValueError, match="cannot be multiplied"):
        thunder.compile(f)(torch.randn(2, 3), torch.randn(4, 5))


def test_compile_rejects_non_callables():
    with pytest.raises(TypeError, match="function or an nn.Module"):
        thunder.compile(3)


class _Inner(torch.nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):
        if self.how == "unsupported":
            return torch.tensor(x.tolist())  # inner-unsupported
        if x.max() + torch.rand(()) > 0:  # inner-branch
            return x
        return -x


class _Outer(torch.nn.Module):
    def __init__(self, how):
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Identity(), _Inner(how))

    def forward(self, x):
        return self.block(x * 2) + 1  # outer-call


@pytest.mark.parametrize("how, error, inner_line", [
    ("unsupported", thunder.UnsupportedOpError, "inner-unsupported"),
    ("branch", thunder.DataDependentError, "inner-branch")])
def test_errors_in_nested_modules_show_the_users_stack(how, error, inner_line):
    with pytest.raises(error) as info:
        thunder.compile(_Outer(how))(torch.randn(3))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    # the user's frames, outermost first, with file:line and the source of each line
    outer_at = notes.index("# outer-call")
    inner_at = notes.index(f"# {inner_line}")
    assert outer_at < inner_at
    assert notes.count("test_errors.py") >= 2 and "in forward" in notes
    if how == "unsupported":
        assert "Tensor.tolist" in str(info.value)
    else:
        assert "torch.where" in str(info.value)


@pytest.mark.parametrize("body", ["x.numpy()", "x.data_ptr()", "x.untyped_storage()"])
def test_reading_tensor_memory_is_a_clear_error(body):
    fn = eval(f"lambda x: {body}")
    with pytest.raises(thunder.UnsupportedOpError, match="reads a tensor's memory"):
        thunder.compile(fn)(torch.randn(2))


def _train_step(model, x):
    loss = model(x).square().mean()
    loss.backward()
    return loss.detach()


def _grad_penalty(x):
    (g,) = torch.autograd.grad((x * x).sum(), x, create_graph=True)
    return g.sum()


@pytest.mark.parametrize("fn", [_train_step, _grad_penalty])
def test_autograd_inside_the_compiled_function_is_a_clear_error_naming_the_line(fn):
    args = (torch.nn.Linear(3, 1), torch.randn(2, 3)) if fn is _train_step else (torch.randn(3, requires_grad=True),)
    with pytest.raises(thunder.UnsupportedOpError, match="call .backward.. and the optimizer step outside") as info:
        thunder.compile(fn)(*args)
    assert "test_errors.py" in "\n".join(getattr(info.value, "__notes__", []))


def test_reading_grad_inside_the_compiled_function_is_a_clear_error():
    model = torch.nn.Linear(3, 1)
    model(torch.randn(2, 3)).sum().backward()
    clip = thunder.compile(lambda params: torch.nn.utils.clip_grad_norm_(params, 0.1))
    with pytest.raises(thunder.UnsupportedOpError, match="optimizer step outside"):
        clip(list(model.parameters()))


def test_bad_shapes_raise_a_runtime_error_the_program_can_catch_like_eager():
    """torch raises RuntimeError for arguments an operation does not take; so does Thunder (an
    ``InvalidArgumentError``, also a ValueError), so a program's ``except RuntimeError`` fallback
    takes the same path as in eager."""
    def f(x, w):
        try:
            return x @ w
        except RuntimeError:
            return x @ w.T

    x, w = torch.randn(2, 3), torch.randn(4, 3)
    torch.testing.assert_close(thunder.compile(f)(x, w), f(x, w))
    with pytest.raises(RuntimeError, match="cannot be multiplied") as info:
        thunder.compile(lambda x, w: x @ w)(x, w)
    assert isinstance(info.value, (ValueError, thunder.InvalidArgumentError))
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        thunder.compile(lambda x, w: x + w)(x, w)
