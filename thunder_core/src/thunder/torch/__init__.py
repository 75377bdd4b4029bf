"""The torch language: torch operations as symbols defined in terms of primitives.

Importing this package registers every torch-language symbol (``ltorch.*``) and fills the
tables that map torch callables and Tensor methods to them. ``dispatch`` is what acquisition calls
for a torch callable: the registered symbol if there is one, otherwise an opaque symbol
(``thunder.torch.opaque``), so every torch operation can be traced.
"""

from __future__ import annotations

from thunder.core import proxies
from thunder.torch import creation, elementwise, nn, opaque, reduction, shape  # noqa: F401  (registers)
from thunder.torch.opaque import is_inplace, opaque_call
from thunder.torch.registry import ALL, SYMBOL_TO_TORCH, TORCH_TO_SYMBOL, namespace

__all__ = ["ALL", "SYMBOL_TO_TORCH", "TORCH_TO_SYMBOL", "dispatch", "is_torch_callable", "namespace"]


def dispatch(fn, args, kwargs):
    """Runs torch callable ``fn`` on proxies: its symbol, or an opaque symbol for it."""
    if is_inplace(fn, kwargs):
        return opaque_call(fn, args, kwargs)
    target = TORCH_TO_SYMBOL.get(fn)
    if target is None:
        return opaque_call(fn, args, kwargs)
    return target(*args, **kwargs)


def is_torch_callable(fn) -> bool:
    """Whether ``fn`` is a torch operation that acquisition should dispatch rather than interpret."""
    if fn in TORCH_TO_SYMBOL:
        return True
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", "") or ""
    if module == "torch._C._nn" or module == "torch._C._linalg" or module == "torch._C._special":
        return True
    if module == "torch" and callable(fn):
        return True  # builtins like torch.cumsum report module "torch"
    return qualname.startswith(("TensorBase.", "Tensor.")) and not module.startswith("torch.nn")


proxies.TORCH_FUNCTION_HANDLER[0] = dispatch
