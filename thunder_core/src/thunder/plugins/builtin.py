"""The built-in plugin: contributes the core's executors through the same hooks as any plugin."""

from thunder.executors.sdpa import sdpa_executor
from thunder.executors.torch_compile import torch_compile_executor
from thunder.executors.torchex import torch_executor
from thunder.plugins.hookspecs import hookimpl


class BuiltinPlugin:
    @hookimpl
    def thunder_executors(self, options):
        return [torch_compile_executor, sdpa_executor, torch_executor]
