"""Training: reverse-mode autodiff on traces and its joining to torch.autograd.

``transform`` splits a computation into forward and backward traces, ``rules`` holds the VJP
rules, ``opaque`` differentiates torch operations Thunder has no definition for, and ``function``
runs the compiled pair as one ``torch.autograd.Function``.
"""

from thunder.transforms.autodiff.function import training_callable
from thunder.transforms.autodiff.transform import (
                                                   ForwardBackward,
                                                   NotDifferentiable,
                                                   needs_grad,
                                                   split_for_training,
                                                   split_forward_backward,
                                                   without_grad_mode_changes,
)

__all__ = ["ForwardBackward", "NotDifferentiable", "needs_grad", "split_for_training", "split_forward_backward",
           "training_callable", "without_grad_mode_changes"]
