"""Random numbers: factories, and the generator state as operations of the program.

Random factories draw from primitives (``prims.uniform``, ``prims.normal``, ``prims.bernoulli``)
that the torch executor implements with the same torch kernels eager uses (``uniform_``,
``normal_``, ``bernoulli_``), so a compiled program consumes the default generator exactly like
eager: same seed, same values, on CPU. A call with an explicit ``generator=`` runs opaquely through
torch with that generator.

Seeding and saving/restoring the generator state inside a compiled program (``torch.manual_seed``,
``torch.get_rng_state``/``set_rng_state``, which ``torch.random.fork_rng`` and checkpointing use)
are recorded as side-effecting symbols, so they happen when the program runs, in program order.
"""

from __future__ import annotations

import torch

from thunder import prims
from thunder.core.proxies import TensorProxy
from thunder.torch.creation import _device, _size
from thunder.torch.opaque import opaque_call
from thunder.torch.registry import torchsymbol


def _with_generator(fn, args, kwargs):
    """A factory given its own generator: through torch, which draws from that generator."""
    return opaque_call(fn, args, {k: v for k, v in kwargs.items() if v is not None})


@torchsymbol(torch.rand)
def rand(*size, generator=None, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False):
    if generator is not None:
        return _with_generator(torch.rand, size, dict(generator=generator, dtype=dtype, device=device))
    return prims.uniform(_size(size), 0.0, 1.0, dtype or torch.get_default_dtype(), _device(device))


@torchsymbol(torch.randn)
def randn(*size, generator=None, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False):
    if generator is not None:
        return _with_generator(torch.randn, size, dict(generator=generator, dtype=dtype, device=device))
    return prims.normal(_size(size), 0.0, 1.0, dtype or torch.get_default_dtype(), _device(device))


@torchsymbol(torch.rand_like)
def rand_like(a, *, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False,
              memory_format=None, generator=None):
    if generator is not None:
        return _with_generator(torch.rand_like, (a,), dict(generator=generator, dtype=dtype, device=device))
    return prims.uniform(tuple(a.shape), 0.0, 1.0, dtype or a.dtype, _device(device, a.device))


@torchsymbol(torch.randn_like)
def randn_like(a, *, dtype=None, layout=None, device=None, pin_memory=False, requires_grad=False,
               memory_format=None, generator=None):
    if generator is not None:
        return _with_generator(torch.randn_like, (a,), dict(generator=generator, dtype=dtype, device=device))
    return prims.normal(tuple(a.shape), 0.0, 1.0, dtype or a.dtype, _device(device, a.device))


# -- the default generator's state --------------------------------------------------------------

@torchsymbol(torch.manual_seed, torch.random.manual_seed, tags=("side_effect",))
def manual_seed(seed) -> None:
    """Seeds the default generator when the program runs (returns None in traced code, where
    eager returns the generator)."""
    return None


@torchsymbol(torch.get_rng_state, torch.random.get_rng_state, tags=("side_effect",))
def get_rng_state():
    return TensorProxy(torch.get_rng_state().shape, torch.uint8, "cpu")


@torchsymbol(torch.set_rng_state, torch.random.set_rng_state, tags=("side_effect",))
def set_rng_state(new_state) -> None:
    return None


# -- the CUDA generators' state (torch.random.fork_rng and checkpointing save and restore it for
# programs on CUDA): recorded like the default generator's, run when the program runs -------------

@torchsymbol(torch.cuda.get_rng_state, torch.cuda.random.get_rng_state, tags=("side_effect",))
def cuda_get_rng_state(device="cuda"):
    return TensorProxy(torch.cuda.get_rng_state(device).shape, torch.uint8, "cpu")


@torchsymbol(torch.cuda.set_rng_state, torch.cuda.random.set_rng_state, tags=("side_effect",))
def cuda_set_rng_state(new_state, device="cuda") -> None:
    return None


@torchsymbol(torch.cuda.manual_seed, torch.cuda.random.manual_seed, tags=("side_effect",))
def cuda_manual_seed(seed) -> None:
    return None


@torchsymbol(torch.cuda.manual_seed_all, torch.cuda.random.manual_seed_all, tags=("side_effect",))
def cuda_manual_seed_all(seed) -> None:
    return None
