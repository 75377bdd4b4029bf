"""Gradients of opaque symbols (torch operations without a torch-language definition) from torch.

An opaque operation that needs a gradient becomes two symbols. In the forward trace,
``autograd.<op>`` runs the torch operation once, under ``torch.enable_grad`` on detached copies of
its differentiable inputs, and returns its outputs plus a *graph* handle (the outputs with their
torch autograd graph and the detached inputs). In the backward trace, ``autograd.<op>_vjp(graph,
grads...)`` calls ``torch.autograd.grad`` on that graph.

Why run once and keep torch's graph rather than recompute in the backward: some opaque operations
have side effects that must happen exactly once (batch norm updates its running statistics in
place), and the graph saves exactly what eager autograd saves, so memory matches eager for those
operations. The graph is kept only while the backward may still need it: it is released after a
backward that does not retain the graph, like eager's saved tensors.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from thunder.core.proxies import Proxy, TensorProxy
from thunder.core.symbol import BoundSymbol, Symbol
from thunder.torch.registry import SYMBOL_TO_TORCH


class _Namespace:
    """What ``autograd`` names in a printed trace before executors claim it."""


namespace = _Namespace()
_SYMBOLS: dict[object, tuple[Symbol, Symbol]] = {}


class GraphProxy(Proxy):
    """A trace value holding the torch autograd graph of one opaque operation."""

    __slots__ = ()

    def __init__(self, name=None):
        super().__init__(name, "graph")

    def describe(self) -> str:
        return "torch autograd graph"


class Graph:
    """The outputs (with their autograd graph) and the differentiable inputs of one call."""

    __slots__ = ("outputs", "inputs")

    def __init__(self, outputs, inputs):
        self.outputs = outputs
        self.inputs = inputs


def _run_with_graph(fn, grad_positions, diff_outputs, args, kwargs):
    """Runs ``fn`` recording its autograd graph w.r.t. the flat arguments at ``grad_positions``.
    ``diff_outputs`` marks the flat outputs the trace sends gradients for, so the graph's outputs
    line up with them even where torch finds an output not differentiable (``lu_unpack``'s P)."""
    flat, spec = tree_flatten((args, kwargs))
    inputs = []
    for i in grad_positions:
        flat[i] = flat[i].detach().requires_grad_(True)
        inputs.append(flat[i])
    args, kwargs = tree_unflatten(flat, spec)
    with torch.enable_grad():
        out = fn(*args, **kwargs)
    flat_out, out_spec = tree_flatten(out)
    graph = Graph([o for o, d in zip(flat_out, diff_outputs) if d], inputs)
    detached = [o.detach() if isinstance(o, torch.Tensor) else o for o in flat_out]
    return tree_unflatten(detached, out_spec), graph


def _vjp(graph: Graph, *grads):
    """The gradients of the graph's inputs given the gradients of its differentiable outputs."""
    pairs = [(o, g) for o, g in zip(graph.outputs, grads)
             if g is not None and isinstance(o, torch.Tensor) and o.requires_grad]
    keep = torch._C._autograd._get_current_graph_task_keep_graph()  # True outside a backward
    if not pairs:  # every gradient arrives at an output torch does not differentiate
        return tuple(torch.zeros_like(i) for i in graph.inputs)
    result = torch.autograd.grad([o for o, _ in pairs], graph.inputs, [g for _, g in pairs],
                                 retain_graph=keep, allow_unused=True)
    grads = tuple(torch.zeros_like(i) if r is None else r for r, i in zip(result, graph.inputs))
    if not keep:
        graph.outputs = graph.inputs = None  # free what torch saved, as eager would
    return grads


def _symbols(opaque: Symbol) -> tuple[Symbol, Symbol]:
    """The forward and VJP symbols standing for an opaque symbol (one pair per operation)."""
    pair = _SYMBOLS.get(opaque)
    if pair is None:
        fn = SYMBOL_TO_TORCH[opaque.id]

        def forward(*args, _grad_positions, _diff_outputs, **kwargs):
            out, graph = _run_with_graph(fn, _grad_positions, _diff_outputs, args, kwargs)
            return out, graph

        forward_sym = Symbol(opaque.name, None, module="autograd", is_prim=True, module_object=namespace,
                             tags=("opaque_autograd",))
        vjp_sym = Symbol(f"{opaque.name}_vjp", None, module="autograd", is_prim=True,
                         module_object=namespace, tags=("opaque_autograd",))
        setattr(namespace, forward_sym.name, forward)
        setattr(namespace, vjp_sym.name, _vjp)
        # the torch executor runs them as these Python functions
        SYMBOL_TO_TORCH[forward_sym.id] = forward
        SYMBOL_TO_TORCH[vjp_sym.id] = _vjp
        pair = _SYMBOLS[opaque] = (forward_sym, vjp_sym)
    return pair


def forward_with_graph(bsym: BoundSymbol) -> tuple[BoundSymbol, GraphProxy, list]:
    """The forward bound symbol replacing opaque ``bsym``: same outputs plus a graph handle.
    Returns it, the handle, and the proxies that will receive gradients (in order)."""
    forward_sym, _ = _symbols(bsym.sym)
    flat = tree_flatten((bsym.args, bsym.kwargs))[0]
    positions = tuple(i for i, a in enumerate(flat) if isinstance(a, TensorProxy) and a.requires_grad)
    graph = GraphProxy()
    diff = tuple(isinstance(o, TensorProxy) and o.requires_grad for o in tree_flatten(bsym.output)[0])
    kwargs = dict(bsym.kwargs, _grad_positions=positions, _diff_outputs=diff)
    new = BoundSymbol(forward_sym, bsym.args, kwargs, (bsym.output, graph), [], bsym.source)
    return new, graph, [flat[i] for i in positions]


def differentiable_outputs(bsym: BoundSymbol) -> list[TensorProxy]:
    """The outputs torch records a graph for (floating tensors computed from differentiable inputs)."""
    return [o for o in bsym.flat_proxy_outputs() if isinstance(o, TensorProxy) and o.requires_grad]


def record_vjp(opaque_bsym: BoundSymbol, graph: GraphProxy, grads: list, inputs: list) -> list:
    """Records ``autograd.<op>_vjp`` in the current (backward) trace; returns the input gradients."""
    from thunder.core.trace import current_trace

    _, vjp_sym = _symbols(opaque_bsym.sym)
    outs = tuple(TensorProxy(p.shape, p.dtype, p.device) for p in inputs)
    current_trace().record(BoundSymbol(vjp_sym, (graph, *grads), {}, outs, [], opaque_bsym.source))
    return list(outs)
