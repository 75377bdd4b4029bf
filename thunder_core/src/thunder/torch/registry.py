"""The registry that ties torch callables to torch-language symbols.

``@torchsymbol(torch.add, torch.Tensor.add, methods=["add", "__add__"])`` makes the decorated
function a symbol ``ltorch.add`` whose decomposition is the function body. The registry then
answers two questions: which symbol a torch callable maps to while a program is acquired
(``TORCH_TO_SYMBOL``), and which torch callable runs a symbol on the torch executor
(``SYMBOL_TO_TORCH``: the first torch callable given, so a symbol's signature is that callable's
signature).
"""

from __future__ import annotations

import torch

from thunder.core.proxies import TENSOR_METHODS, TensorProxy
from thunder.core.symbol import Symbol

ALL: dict[str, Symbol] = {}
TORCH_TO_SYMBOL: dict[object, object] = {}  # a symbol, or an adapter that calls one
SYMBOL_TO_TORCH: dict[str, object] = {}


class _LtorchNamespace:
    """What ``ltorch`` names in a printed trace."""


namespace = _LtorchNamespace()


def torchsymbol(*torch_callables, methods=(), name: str | None = None, tags: tuple = ()):
    """Registers the decorated decomposition as the torch-language symbol for ``torch_callables``
    and as the proxy methods ``methods``."""

    def decorator(fn):
        sym_name = name or fn.__name__.rstrip("_")
        sym = Symbol(sym_name, fn, module="ltorch", module_object=namespace, tags=tags)
        sym.fn.__doc__ = fn.__doc__
        assert sym_name not in ALL, f"ltorch.{sym_name} registered twice"
        ALL[sym_name] = sym
        setattr(namespace, sym_name, sym)
        for c in torch_callables:
            TORCH_TO_SYMBOL[c] = sym
        if torch_callables:
            SYMBOL_TO_TORCH[sym.id] = torch_callables[0]
        for m in methods:
            TENSOR_METHODS[m] = sym
        return sym

    return decorator


def adapts(*torch_callables):
    """Maps torch callables whose signature differs from a symbol's to the decorated adapter,
    which rearranges the arguments and calls the symbol."""

    def decorator(fn):
        for c in torch_callables:
            TORCH_TO_SYMBOL[c] = fn
        return fn

    return decorator


def method_only(*names):
    """Registers a plain function as proxy methods (for methods that only rearrange arguments)."""

    def decorator(fn):
        for n in names:
            TENSOR_METHODS[n] = fn
        return fn

    return decorator


def tensor_property(*names):
    """Registers the decorated function of one tensor as read-only proxy attributes
    (``Tensor.T``, ``Tensor.mH``): properties, since Python code reads them without calling."""

    def decorator(fn):
        for n in names:
            setattr(TensorProxy, n, property(fn))
        return fn

    return decorator


def tensor_method(name: str):
    """``torch.Tensor.<name>``, or None on torch versions without it."""
    return getattr(torch.Tensor, name, None)
