"""Reverse-mode autodiff on traces: splits a computation into a forward and a backward trace.

``split_forward_backward(trace)`` returns

- the *forward* trace: the computation, with every symbol that needs a gradient written at the
  level where a VJP rule applies (a symbol without a rule is replaced by its decomposition, down to
  primitives; an opaque torch operation is run through torch's autograd, see ``opaque``), returning
  ``(outputs, residuals)``;
- the *backward* trace: takes the residuals and one gradient per differentiable output and returns
  one gradient per input of the computation (None where an input needs none).

The backward trace is recorded by running the VJP rules (``rules``) in reverse order over the
forward trace on proxies. Rules refer to forward values (a symbol's inputs and outputs); whatever
forward values the recorded backward reads are the residuals, so the forward saves exactly what
the backward uses. Random values are never recomputed, so dropout's mask is a residual: forward
and backward see the same mask.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils._pytree import tree_flatten, tree_map

from thunder import prims
from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol
from thunder.core.trace import Trace, tracing
from thunder.torch.registry import SYMBOL_TO_TORCH
from thunder.transforms import checkpoint
from thunder.transforms.autodiff import opaque
from thunder.transforms.autodiff.accumulate import Gradients
from thunder.transforms.autodiff.inplace import _mutated, alias_groups
from thunder.transforms.autodiff.rules import bind, rule_for
from thunder.transforms.dce import dce

# opaque torch operations through which no gradient flows
_NON_DIFFERENTIABLE = {torch.Tensor.detach, torch.detach, torch._C._set_grad_enabled}


@dataclass
class ForwardBackward:
    forward: Trace
    backward: Trace
    residuals: list          # forward values the backward reads, in the backward's argument order
    grad_outputs: list[int]  # positions of the computation's outputs that receive a gradient
    # per input of the computation: which entries of ``grad_outputs`` it contributes to (an input
    # reaching only outputs the caller did not differentiate gets no gradient, as in eager)
    reaches: list[frozenset]


class NotDifferentiable(Exception):
    """The trace cannot be split (an in-place operation on a value that needs a gradient)."""


def needs_grad(trace: Trace) -> bool:
    """Whether running ``trace`` should build a backward: some output needs a gradient."""
    return any(isinstance(o, TensorProxy) and o.requires_grad for o in tree_flatten(trace.output)[0])


def _torch_callable(bsym):
    return SYMBOL_TO_TORCH.get(bsym.sym.id) if "opaque" in bsym.sym.tags else None


def _outputs_need_grad(bsym) -> bool:
    """Some output needs a gradient and some input can receive one (a tensor created by
    ``full`` that an in-place operation later fills from a differentiable value is marked as
    needing a gradient from its creation on, but its creator has nothing to differentiate)."""
    return any(isinstance(o, TensorProxy) and o.requires_grad for o in bsym.flat_proxy_outputs()) and \
        any(isinstance(p, TensorProxy) and p.requires_grad for p in bsym.flat_proxy_args())


def _is_identity(bsym) -> bool:
    """A torch-language symbol that returns its input (``contiguous``, a no-op ``to``)."""
    inputs = {id(p) for p in bsym.flat_proxy_args()}
    return bool(inputs) and all(id(o) in inputs for o in bsym.flat_proxy_outputs())


def _is_inplace(bsym) -> bool:
    outputs = bsym.flat_proxy_outputs()
    inputs = {id(p) for p in bsym.flat_proxy_args()}
    return not outputs or any(id(o) in inputs for o in outputs)


class _Expander:
    """Writes each symbol that needs a gradient at the level where a rule applies."""

    def __init__(self, executors=()):
        self.bsyms: list[BoundSymbol] = []
        self.graphs: dict[int, tuple] = {}  # id(forward bsym) -> (opaque bsym, graph proxy, grad inputs)
        self.executors = [ex for ex in executors if hasattr(ex, "vjp_for")]
        self.kernels: dict[int, tuple] = {}  # id(forward bsym) -> (original bsym, backward, residuals)

    def add(self, bsym: BoundSymbol, source=None, region=None) -> None:
        if source is not None and bsym.source is None:
            bsym.source = source
        # inside an activation-checkpointed region: what is written for it stays in the region
        region = checkpoint.region_of(bsym) if region is None else region
        if region is not None:
            checkpoint.mark(bsym, region)
        fn = _torch_callable(bsym)
        if fn is torch._C._set_grad_enabled:
            return  # autodiff already knows what needs a gradient; the forward runs without grad
        if "opaque" in bsym.sym.tags and _is_inplace(bsym):
            if any(isinstance(p, TensorProxy) and p.requires_grad for p in bsym.flat_proxy_args()):
                raise NotDifferentiable(f"in-place {bsym.sym.id} on a value that needs a gradient")
            self.bsyms.append(bsym)  # e.g. a buffer update: runs as is
            return
        if not _outputs_need_grad(bsym) or _is_identity(bsym) or fn in _NON_DIFFERENTIABLE:
            self.bsyms.append(bsym)
            return
        executor_vjp = next((v for ex in self.executors if (v := ex.vjp_for(bsym)) is not None), None)
        if executor_vjp is not None:  # an executor's own kernels for forward and backward
            make_forward, backward = executor_vjp
            forward, residuals = make_forward(bsym)
            self.kernels[id(forward)] = (bsym, backward, residuals)
            self.bsyms.append(forward)
        elif rule_for(bsym) is not None:
            self.bsyms.append(bsym)
        elif bsym.subsymbols:
            for sub in bsym.subsymbols:
                self.add(sub, bsym.source, region)
        elif fn is not None:
            forward, graph, inputs = opaque.forward_with_graph(bsym)
            self.graphs[id(forward)] = (bsym, graph, inputs)
            self.bsyms.append(forward)
        else:
            raise NotImplementedError(f"no VJP rule for {bsym.sym.id}")


class _Ctx:
    """What a rule sees: the symbol's output and the gradient arriving at it."""

    __slots__ = ("out", "g")

    def __init__(self, out, g):
        self.out = out
        self.g = g


def _zeros_like(p):
    return prims.full(tuple(p.shape), 0, p.dtype, p.device)


def split_forward_backward(trace: Trace, executors=()) -> ForwardBackward:
    """The forward and backward traces of ``trace`` (see the module docstring). ``executors``:
    those that will run the traces, whose own gradient kernels (``register_vjp``) take precedence
    over the VJP rules."""
    expander = _Expander(executors)
    with tracing(trace):  # names for the graph handles of opaque operations
        for bsym in trace.bound_symbols:
            expander.add(bsym)

    backward = Trace("backward", names=set(trace._names))
    backward._counters = dict(trace._counters)
    backward.stage = "backward"
    grads = Gradients()
    outputs = list(trace.output) if isinstance(trace.output, (tuple, list)) else [trace.output]
    connected = _connected(trace, expander.bsyms)
    grad_outputs = [i for i, o in enumerate(outputs)
                    if isinstance(o, TensorProxy) and o.requires_grad and o.name in connected]
    current = [None]
    backward.source_provider = lambda: current[0].source if current[0] is not None else None

    with tracing(backward), torch.no_grad():
        cotangents = [TensorProxy(outputs[i].shape, outputs[i].dtype, outputs[i].device,
                                  name=backward.make_name("g")) for i in grad_outputs]
        for i, g in zip(grad_outputs, cotangents):
            grads.add(outputs[i], g)
        for bsym in reversed(expander.bsyms):
            current[0] = bsym
            _record_vjp(bsym, grads, expander)
        current[0] = None
        backward.args = []
        backward.output = tuple(grads.get(a) if isinstance(a, TensorProxy) and a.requires_grad else None
                                for a in trace.args)

    # symbols returning their input (a reshape to the same shape) compute nothing
    backward = dce(backward.derive("backward", [b for b in backward.bound_symbols if not _is_identity(b)]))
    produced = {g.name for g in cotangents}
    residuals: dict[str, Proxy] = {}
    for b in backward.bound_symbols:
        for p in b.flat_proxy_args():
            if p.name not in produced:
                residuals.setdefault(p.name, p)
        produced.update(p.name for p in b.flat_proxy_outputs())
    for p in tree_flatten(backward.output)[0]:
        if isinstance(p, Proxy) and p.name not in produced:
            residuals.setdefault(p.name, p)
    residuals = list(residuals.values())
    stale = _written_after_read(expander.bsyms, residuals)
    if stale is not None:
        raise NotDifferentiable(f"{stale.sym.name} modifies a value the backward reads, after the forward read it")
    backward.args = residuals + cotangents
    backward.stage = "backward"

    forward = trace.derive("forward: outputs and saved residuals", expander.bsyms)
    forward.output = (tuple(outputs), tuple(residuals))
    reaches = _reaches(trace.args, expander.bsyms, [outputs[i] for i in grad_outputs])
    return ForwardBackward(forward, backward, residuals, grad_outputs, reaches)


def _written_after_read(bsyms: list, residuals: list):
    """The first in-place operation of the forward that modifies (directly or through a view) a
    value the backward reads, after some operation read it: the saved value is the modified one
    then, not the one the reading operation's gradient needs (eager autograd refuses this with
    "modified by an inplace operation"). None when there is none. Values are grouped by possible
    aliasing (an operation whose outputs may be views of its inputs joins them; for a torch
    operation without a definition, running it on fake tensors tells); a write to a group holding
    a residual after a read of the group by an operation a gradient flows through counts."""
    writes = [b for b in bsyms if "opaque" in b.sym.tags and _is_inplace(b)]
    if not writes:
        return None
    root = alias_groups(bsyms)
    saved = {root(r.name) for r in residuals if isinstance(r, TensorProxy)}
    read = set()
    writes = {id(b) for b in writes}
    for b in bsyms:
        if id(b) in writes:
            target = _mutated(b)
            if target is None:  # returns nothing (``__setitem__``): it writes its first tensor
                target = next((p for p in b.flat_proxy_args() if isinstance(p, TensorProxy)), None)
            if target is not None and root(target.name) in saved and root(target.name) in read:
                return b
        elif any(isinstance(o, TensorProxy) and o.requires_grad for o in b.flat_proxy_outputs()):
            read.update(root(p.name) for p in b.flat_proxy_args())  # its gradient may need them
    return None


def _reaches(args, bsyms, differentiable_outputs) -> list[frozenset]:
    """For each input, the positions in ``differentiable_outputs`` of the outputs computed from it."""
    depends: dict[str, frozenset] = {a.name: frozenset([i]) for i, a in enumerate(args) if isinstance(a, Proxy)}
    for b in bsyms:
        sources = frozenset().union(*(depends.get(p.name, frozenset()) for p in b.flat_proxy_args()))
        for p in b.flat_proxy_outputs():
            depends[p.name] = depends.get(p.name, frozenset()) | sources
    reached: list[set] = [set() for _ in args]
    for k, out in enumerate(differentiable_outputs):
        for i in depends.get(out.name, ()):
            reached[i].add(k)
    return [frozenset(r) for r in reached]


def _connected(trace: Trace, bsyms: list) -> set[str]:
    """Names of the values a gradient can flow to from the inputs that need one (a value computed
    only through ``detach`` from them gets none, whatever its proxy's ``requires_grad`` says)."""
    connected = {a.name for a in trace.args if isinstance(a, TensorProxy) and a.requires_grad}
    for b in bsyms:
        if _torch_callable(b) in _NON_DIFFERENTIABLE:
            continue
        if any(p.name in connected for p in b.flat_proxy_args()):
            connected.update(o.name for o in b.flat_proxy_outputs()
                             if isinstance(o, TensorProxy) and o.requires_grad)
    return connected


def _record_vjp(bsym: BoundSymbol, grads: Gradients, expander: _Expander) -> None:
    """Records the backward of one forward bound symbol, given the gradients of its outputs."""
    outs = [o for o in bsym.flat_proxy_outputs() if isinstance(o, TensorProxy)]
    if not any(grads.get(o) is not None for o in outs):
        return
    kernel = expander.kernels.get(id(bsym))
    if kernel is not None:
        original, backward, residuals = kernel
        (out,) = [o for o in original.flat_proxy_outputs() if isinstance(o, TensorProxy)]
        args, _ = bind(original)
        for arg, g_arg in zip(args, backward(original, residuals, grads.get(out))):
            grads.add(arg, g_arg)
        return
    graph = expander.graphs.get(id(bsym))
    if graph is not None:
        original, handle, inputs = graph
        diff_outs = opaque.differentiable_outputs(original)
        cot = [grads.get(o) if grads.get(o) is not None else _zeros_like(o) for o in diff_outs]
        for p, g in zip(inputs, opaque.record_vjp(original, handle, cot, inputs)):
            grads.add(p, g)
        return
    rule = rule_for(bsym)
    if rule is None:
        return  # a symbol through which no gradient flows (detach)
    g = tree_map(lambda o: (grads.get(o) if grads.get(o) is not None else _zeros_like(o))
                 if isinstance(o, TensorProxy) else None, bsym.output)
    args, kwargs = bind(bsym)
    input_grads = rule(_Ctx(bsym.output, g), *args, **kwargs)
    for arg, g_arg in zip(args, input_grads):
        if isinstance(arg, (list, tuple)) and isinstance(g_arg, (list, tuple)):
            for a, ga in zip(arg, g_arg):
                grads.add(a, ga)
        else:
            grads.add(arg, g_arg)


def without_grad_mode_changes(trace: Trace) -> Trace:
    """``trace`` for a call where nothing needs a gradient: its grad-mode switches (``no_grad``
    regions) change nothing, and left in they would split fusion regions."""
    kept = [b for b in trace.bound_symbols if _torch_callable(b) is not torch._C._set_grad_enabled]
    return trace if len(kept) == len(trace.bound_symbols) else trace.derive("grad-mode switches removed", kept)


def split_for_training(trace: Trace, executors=()) -> ForwardBackward | None:
    """What a compiled call runs: None when no output needs a gradient (inference: no backward is
    built) or when the trace modifies in place a value that needs a gradient (then torch's eager
    autograd records the trace's torch operations, as before autodiff existed); otherwise the
    forward/backward split with cheap intermediates rematerialized in the backward. In-place
    operations on intermediates are first made out of place (``inplace.functionalize``). The
    backward's repeats are merged last: the chain rule writes some terms once per path (``x * x``
    gives ``g * x`` twice; a cast's rule casts back once per use), and rematerialization may
    recompute what the backward already computes."""
    from thunder.transforms.autodiff.inplace import functionalize
    from thunder.transforms.cse import cse
    from thunder.transforms.rematerialization import rematerialize

    if not torch.is_grad_enabled() or not needs_grad(trace):
        return None
    try:
        split = split_forward_backward(functionalize(trace), executors)
    except NotDifferentiable:
        return None
    split = rematerialize(split)
    return replace(split, backward=cse(split.backward))
