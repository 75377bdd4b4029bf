"""Plugins: discovery through entry points and one pluggy manager per compile.

``available()`` lists installed plugins; ``plugin_manager(plugins)`` builds the manager a compile
uses. Hook specifications live in ``thunder.plugins.hookspecs``.
"""

from thunder.plugins.hookspecs import hookimpl, hookspec
from thunder.plugins.manager import PluginInfo, UnknownPluginError, available, plugin_manager

__all__ = ["PluginInfo", "UnknownPluginError", "available", "hookimpl", "hookspec", "plugin_manager"]
