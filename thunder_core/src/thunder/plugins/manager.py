"""Finding plugins by name and composing them with pluggy.

Installed plugins are entry points in the ``thunder.plugins`` group; an entry point names a class
(instantiated with no arguments) or an object. ``plugins=`` in ``thunder.compile`` accepts names,
a single name, plugin objects, or classes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from thunder.plugins import hookspecs

ENTRY_POINT_GROUP = "thunder.plugins"

# first-party plugin names and the distribution that provides each
KNOWN_DISTRIBUTIONS = {
    "fp8": "thunder-fp8",
    "fsdp": "thunder-fsdp",
    "ddp": "thunder-fsdp",
    "cudagraphs": "thunder-cudagraphs",
    "reduce-overhead": "thunder-cudagraphs",
    "quant": "thunder-quant",
    "triton-kernels": "thunder-triton-kernels",
}


class UnknownPluginError(LookupError):
    """A plugin name that no installed distribution provides."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    value: str  # "package.module:Object"


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[PluginInfo]:
    """The installed plugins, with the distribution and version that provide each."""
    _entry_points.cache_clear()
    infos = []
    for name, ep in sorted(_entry_points().items()):
        dist = ep.dist
        infos.append(PluginInfo(name, dist.name if dist else "?", dist.version if dist else "?", ep.value))
    return infos


def _load(name: str):
    ep = _entry_points().get(name)
    if ep is None:
        _entry_points.cache_clear()
        ep = _entry_points().get(name)
    if ep is None:
        installed = ", ".join(sorted(_entry_points())) or "none"
        dist = KNOWN_DISTRIBUTIONS.get(name)
        how = (f"install it with `pip install {dist}`" if dist else
               f"if it is a third-party plugin, install the distribution that provides it "
               f"(often `pip install thunder-{name}`)")
        raise UnknownPluginError(f"no Thunder plugin named {name!r} is installed; {how}. "
                                 f"Installed plugins: {installed}.")
    obj = ep.load()
    return obj() if isinstance(obj, type) else obj


def _normalize(plugins) -> list:
    if plugins is None:
        return []
    if isinstance(plugins, (str, type)) or not isinstance(plugins, (list, tuple)):
        plugins = [plugins]
    result = []
    for p in plugins:
        if isinstance(p, str):
            result.append(_load(p))
        elif isinstance(p, type):
            result.append(p())
        else:
            result.append(p)
    return result


def plugin_manager(plugins=None) -> pluggy.PluginManager:
    """A fresh manager with the built-in plugin and ``plugins`` registered, in that order."""
    from thunder.plugins.builtin import BuiltinPlugin

    pm = pluggy.PluginManager("thunder")
    pm.add_hookspecs(hookspecs)
    pm.register(BuiltinPlugin(), name="thunder-builtin")
    for plugin in _normalize(plugins):
        if pm.is_registered(plugin):
            continue
        pm.register(plugin)
    return pm


def chain(pm: pluggy.PluginManager, hook_name: str, value, **kwargs):
    """Calls ``hook_name`` of each plugin in registration order, passing each the previous result
    (as the hook's first argument) where it returns one."""
    hook = getattr(pm.hook, hook_name)
    first = next(iter(hook.spec.argnames))
    for impl in reversed(hook.get_hookimpls()):  # pluggy lists impls last-registered first
        args = {first: value, **kwargs}
        result = impl.function(*(args[a] for a in impl.argnames))
        if result is not None:
            value = result
    return value
