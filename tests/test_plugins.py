"""Plugins: entry-point discovery, plugin objects, executors, options, helpful errors."""

import functools

import pytest
import thunder
import thunder.executors
import thunder.plugins
import torch
from thunder.executors import OperatorExecutor
from thunder.plugins import hookimpl, manager
from torch import nn


def _block():
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))


def test_installed_sample_plugin_is_listed_with_its_distribution():
    infos = {p.name: p for p in thunder.plugins.available()}
    assert "sample" in infos
    assert infos["sample"].distribution == "thunder-sample-executor"
    assert infos["sample"].version == "0.1.0"


def test_plugin_by_name_claims_and_runs_its_op():
    import thunder_sample_executor

    model = _block()
    x = torch.randn(3, 8)
    tm = thunder.compile(model, plugins=["sample"])
    before = thunder_sample_executor.calls["gelu"]
    torch.testing.assert_close(tm(x), model(x))
    assert thunder_sample_executor.calls["gelu"] == before + 1
    assert "sample.ltorch_gelu(" in str(thunder.last_traces(tm)[-1])


def test_plugin_object_with_options():
    from thunder_sample_executor import SamplePlugin

    f = thunder.compile(lambda x: torch.nn.functional.gelu(x.double()) + 1, plugins=[SamplePlugin(float_only=False)])
    x = torch.randn(5)
    torch.testing.assert_close(f(x), torch.nn.functional.gelu(x.double()) + 1)
    assert "sample.ltorch_gelu(" in str(thunder.last_traces(f)[-1])


def test_executor_that_claims_a_primitive_inside_a_torch_op():
    """A higher-priority executor that implements prims.exp gets the exp inside softmax."""
    seen = []
    ex = OperatorExecutor("myexp", priority=5)
    ex.register("prims.exp", lambda a: seen.append(a.shape) or torch.exp(a))

    class ExpPlugin:
        @hookimpl
        def thunder_executors(self, options):
            return [ex]

    f = thunder.compile(lambda x: torch.softmax(x, -1), plugins=[ExpPlugin()])
    x = torch.randn(2, 3)
    torch.testing.assert_close(f(x), torch.softmax(x, -1))
    assert seen == [torch.Size([2, 3])]
    assert "myexp.prims_exp(" in str(thunder.last_traces(f)[-1])


@pytest.fixture
def not_installed(monkeypatch):
    """Hides installed plugins by name, as if their distributions were not installed."""
    def hide(*names):
        installed = manager._entry_points()
        visible = functools.lru_cache(lambda: {n: ep for n, ep in installed.items() if n not in names})
        monkeypatch.setattr(manager, "_entry_points", visible)
    return hide


def test_unknown_plugin_names_the_distribution_to_install(not_installed):
    not_installed("fp8")
    with pytest.raises(LookupError) as info:
        thunder.compile(_block(), plugins=["fp8"])
    message = str(info.value)
    assert "pip install thunder-fp8" in message
    assert "sample" in message  # lists what is installed


def test_single_string_plugin_and_unknown_third_party_name(not_installed):
    not_installed("reduce-overhead", "cudagraphs")
    with pytest.raises(LookupError, match="reduce-overhead.*pip install thunder-cudagraphs"):
        thunder.compile(_block(), plugins="reduce-overhead")
    with pytest.raises(LookupError, match="thunder-frobnicate"):
        thunder.compile(_block(), plugins="frobnicate")


def test_options_must_be_declared_by_a_plugin():
    with pytest.raises(TypeError, match="unknown thunder.compile option"):
        thunder.compile(_block(), no_such_option=1)

    class OptionPlugin:
        @hookimpl
        def thunder_options(self):
            return {"scale": "multiplies nothing; declared for the test"}

    thunder.compile(_block(), plugins=[OptionPlugin()], scale=2)


def test_trace_transform_hook_sees_each_stage():
    stages = []

    class Spy:
        @hookimpl
        def thunder_transform_trace(self, trace, stage, options):
            stages.append((stage, trace.stage))

    f = thunder.compile(lambda x: x + 1, plugins=[Spy()])
    f(torch.ones(2))
    assert [s for s, _ in stages] == ["acquired", "claimed", "final"]


def test_executors_listing_and_explicit_order():
    names = [ex.name for ex in thunder.executors.available(plugins=["sample"])]
    assert names[-1] == "torch" and "torchcompile" in names
    assert names.index("sample") < names.index("torch")
    model = _block()
    tm = thunder.compile(model, plugins=["sample"], executors=["torch"])
    tm(torch.randn(2, 8))
    assert "sample." not in str(thunder.last_traces(tm)[-1])
    with pytest.raises(ValueError, match="unknown executor"):
        thunder.compile(model, executors=["nope"])
