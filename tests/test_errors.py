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


def test_branching_on_a_tensor_value_explains_the_fix():
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(thunder.DataDependentError) as info:
        thunder.compile(f)(torch.randn(4))
    text = "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])
    assert "torch.where" in text
    assert "if x.sum() > 0" in text


def test_shape_errors_are_reported_like_torch():
    def f(x, y):
        return x @ y

    with pytest.raises(ValueError, match="cannot be multiplied"):
        thunder.compile(f)(torch.randn(2, 3), torch.randn(4, 5))


def test_compile_rejects_non_callables():
    with pytest.raises(TypeError, match="function or an nn.Module"):
        thunder.compile(3)
