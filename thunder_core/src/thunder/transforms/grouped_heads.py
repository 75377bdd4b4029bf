"""Attention over key/value heads repeated for grouped-query attention takes the groups instead.

Models with fewer key/value heads than query heads (Llama, Mistral, Qwen) often repeat K and V
up to the query's head count themselves (litgpt: ``k.repeat_interleave(q_per_kv, dim=1)``)
before calling attention. ``enable_gqa=True`` on the unrepeated heads means the same, and an
attention kernel that takes grouped heads (cuDNN's, on torch 2.11) then skips the copies that
repeat K and V, reads a fraction of their memory, and returns their gradients already summed over
each group. The rewrite applies where the attention executor would run such a kernel.
"""

from __future__ import annotations

from thunder.core.proxies import TensorProxy, pyval
from thunder.core.trace import Trace
from thunder.transforms.autodiff.rules import bind
from thunder.transforms.causal_mask import rewrite_attention_calls
from thunder.transforms.dce import has_side_effect


def _repeated(producer) -> TensorProxy | None:
    """The 4-D tensor whose heads (dim 1) ``producer`` repeats, each an integer number of times
    in a row, or None."""
    if producer is None or producer.sym.id != "ltorch.repeat_interleave":
        return None
    (a, repeats, dim, *_), _ = bind(producer)
    if not (isinstance(a, TensorProxy) and a.ndim == 4 and dim is not None and pyval(dim) % 4 == 1):
        return None
    return a if isinstance(pyval(repeats), int) else None


def group_repeated_heads(trace: Trace, takes_groups) -> Trace:
    """``trace`` with each attention call whose key and value are repeated heads called on the
    heads themselves with ``enable_gqa=True``, where ``takes_groups(call)`` says a kernel takes
    that call as it is."""
    producers, written = {}, set()
    for bsym in trace.bound_symbols:
        if has_side_effect(bsym):  # an in-place change after the repeat: the copy is what attention sees
            written.update(p.name for p in bsym.flat_proxy_args())
        for p in bsym.flat_proxy_outputs():
            producers[p.name] = bsym

    def grouped(call):
        query, key, value = call["query"], call["key"], call["value"]
        if call.get("enable_gqa") or not all(isinstance(t, TensorProxy) for t in (query, key, value)):
            return None
        k, v = _repeated(producers.get(key.name)), _repeated(producers.get(value.name))
        if k is None or v is None or k.shape[1] != v.shape[1] or key.shape[1] != query.shape[1]:
            return None
        if k.name in written or v.name in written:
            return None
        call = call | {"key": k, "value": v, "enable_gqa": True}
        return call if takes_groups(call) else None

    return rewrite_attention_calls(trace, "attention on grouped key/value heads", grouped)
