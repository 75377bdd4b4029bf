"""Joins a compiled forward/backward pair to torch.autograd through one ``autograd.Function``.

``training_callable(forward_fn, backward_fn, split)`` returns a callable with the computation's
signature (its inputs in, its flat outputs out). Calling it runs the forward trace inside
``ThunderFunction.forward`` (grad mode off there: the forward trace computes values, not a torch
graph); tensor residuals are kept with ``ctx.save_for_backward`` (so torch frees them after a
backward that does not retain the graph, and checks they were not modified in place), other
residuals (numbers, graph handles of opaque operations) on ``ctx``. Outputs that receive no
gradient (integer and bool ones, and those not computed from values that need one) are marked
non-differentiable, so their ``requires_grad`` is eager's. ``loss.backward()`` /
``torch.autograd.grad`` then run the backward trace, and torch accumulates the returned gradients
into ``.grad`` exactly as for eager ops.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from thunder.core.proxies import TensorProxy

_TENSOR = object()  # marks a residual slot kept by save_for_backward


class _Region:
    """What the autograd.Function needs from one compiled cache entry."""

    __slots__ = ("forward", "backward", "grad_outputs", "differentiable", "reaches", "zeros", "tensor_residuals")

    def __init__(self, forward, backward, split):
        self.forward = forward
        self.backward = backward
        self.grad_outputs = list(split.grad_outputs)
        self.differentiable = frozenset(split.grad_outputs)
        self.reaches = split.reaches
        outputs = split.forward.output[0]
        # (shape, dtype, device) of each differentiable output, for a gradient the caller did not pass
        self.zeros = [(tuple(outputs[i].shape), outputs[i].dtype, outputs[i].device) for i in split.grad_outputs]
        # the usual case, every residual a tensor: saved and restored without a loop over them
        # (a transformer saves hundreds)
        self.tensor_residuals = all(isinstance(r, TensorProxy) for r in split.residuals)


class ThunderFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, region: _Region, *inputs):
        outputs, residuals = region.forward(*inputs)
        ctx.region = region
        ctx.set_materialize_grads(False)  # None for outputs the caller did not differentiate
        if region.tensor_residuals:
            ctx.save_for_backward(*residuals)
            ctx.others = None
        else:
            ctx.save_for_backward(*(r for r in residuals if isinstance(r, torch.Tensor)))
            ctx.others = [_TENSOR if isinstance(r, torch.Tensor) else r for r in residuals]
        # outputs that no gradient flows to (integers, detached or computed from inputs that need
        # none) do not require grad, as in eager
        differentiable = region.differentiable
        ctx.mark_non_differentiable(*(o for i, o in enumerate(outputs) if isinstance(o, torch.Tensor)
                                      and i not in differentiable
                                      and not any(o is outputs[j] for j in differentiable)))
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        if ctx.others is None:
            residuals = ctx.saved_tensors
        else:
            saved = iter(ctx.saved_tensors)
            residuals = [next(saved) if r is _TENSOR else r for r in ctx.others]
        region = ctx.region
        cotangents = [grads[i] for i in region.grad_outputs]
        if all(g is not None for g in cotangents):
            return (None, *region.backward(*residuals, *cotangents))
        # Some outputs were not used by the caller: they contribute zero, and inputs that only
        # reach them get no gradient at all (their ``.grad`` stays None, as in eager).
        given = frozenset(k for k, g in enumerate(cotangents) if g is not None)
        cotangents = [g if g is not None else torch.zeros(shape, dtype=dtype, device=device)
                      for g, (shape, dtype, device) in zip(cotangents, region.zeros)]
        input_grads = region.backward(*residuals, *cotangents)
        return (None, *(g if region.reaches[j] & given else None for j, g in enumerate(input_grads)))


# ``Function.apply`` is a Python wrapper that, outside functorch transforms, only unwraps dead
# functorch wrappers (tensors that escaped a finished ``vjp``/``grad``) before calling the C++
# ``apply``, in a Python generator over every input: ~80 us per call for a model's hundred-odd
# parameters. Doing the same unwrapping with ``map`` over a C function and calling the C++ entry
# directly removes most of that from every training step's start.
_c_apply = super(torch.autograd.Function, ThunderFunction).apply
_unwrap_if_dead = getattr(torch._C._functorch, "unwrap_if_dead", None)
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)


def training_callable(forward_fn, backward_fn, split):
    region = _Region(forward_fn, backward_fn, split)
    all_tensors = all(isinstance(p, TensorProxy) for p in split.forward.args)

    if not all_tensors or _unwrap_if_dead is None or _transforms_active is None:
        def computation(*inputs):
            return ThunderFunction.apply(region, *inputs)
        return computation

    def computation(*inputs):
        if _transforms_active():  # under vmap/grad: the wrapper's functorch handling
            return ThunderFunction.apply(region, *inputs)
        return _c_apply(region, *map(_unwrap_if_dead, inputs))

    return computation
