"""The prologue is the cache key: hits, misses, and no stale results."""

import types

import pytest
import thunder
import torch
from thunder.acquire.prologue import _tensor_guards
from torch import nn

SCALE = 2.0


@pytest.fixture(autouse=True, params=["checks first", "speculative"])
def prologue_mode(request, monkeypatch):
    """Every test twice: with CPU entries checking everything before they run (the default), and
    starting their computation before the Python value checks, as CUDA entries do."""
    if request.param == "speculative":
        monkeypatch.setattr(thunder.compiled, "SPECULATIVE_DEVICES", ("cuda", "cpu"))
    return request.param


def test_same_shape_hits_new_shape_or_dtype_misses_and_stays_correct():
    def f(x, w):
        return torch.tanh(x @ w) * 3

    cf = thunder.compile(f)
    x, w = torch.randn(4, 8), torch.randn(8, 5)
    torch.testing.assert_close(cf(x, w), f(x, w))
    torch.testing.assert_close(cf(x + 1, w), f(x + 1, w))
    assert (thunder.cache_misses(cf), thunder.cache_hits(cf)) == (1, 1)

    x2 = torch.randn(7, 8)
    torch.testing.assert_close(cf(x2, w), f(x2, w))
    assert thunder.cache_misses(cf) == 2
    xd, wd = x.double(), w.double()
    torch.testing.assert_close(cf(xd, wd), f(xd, wd))
    assert thunder.cache_misses(cf) == 3
    cf(x, w)  # the first entry is still there
    assert thunder.cache_misses(cf) == 3


def test_requires_grad_change_misses():
    cf = thunder.compile(lambda x: x * 2)
    x = torch.randn(3)
    cf(x)
    y = cf(x.clone().requires_grad_())
    assert thunder.cache_misses(cf) == 2
    assert y.requires_grad


def test_python_number_arguments_are_guarded():
    def f(x, alpha):
        return x * alpha + alpha

    cf = thunder.compile(f)
    x = torch.randn(5)
    torch.testing.assert_close(cf(x, 2), f(x, 2))
    torch.testing.assert_close(cf(x, 3), f(x, 3))
    torch.testing.assert_close(cf(x, 2.5), f(x, 2.5))
    assert thunder.cache_misses(cf) == 3


def test_global_value_change_is_not_served_stale():
    global SCALE

    def f(x):
        return x * SCALE

    cf = thunder.compile(f)
    x = torch.ones(3)
    torch.testing.assert_close(cf(x), x * 2.0)
    SCALE = 5.0
    try:
        torch.testing.assert_close(cf(x), x * 5.0)
    finally:
        SCALE = 2.0


def test_closure_value_change_is_not_served_stale():
    factor = 2

    def f(x):
        return x * factor

    cf = thunder.compile(f)
    x = torch.ones(3)
    torch.testing.assert_close(cf(x), x * 2)
    factor = 7  # noqa: F841 (read by f through its closure cell)
    torch.testing.assert_close(cf(x), x * 7)



def test_reassigned_default_arguments_are_not_served_stale():
    def f(x, power=2, *, shift=0.0):
        return x ** power + shift

    def g(x):
        return f(x)  # f located through g's globals: its defaults are guarded too

    cf, cg = thunder.compile(f), thunder.compile(g)
    x = torch.rand(3) + 1
    torch.testing.assert_close(cf(x), x ** 2)
    torch.testing.assert_close(cg(x), x ** 2)
    f.__defaults__ = (3,)
    f.__kwdefaults__ = {"shift": 1.0}
    torch.testing.assert_close(cf(x), x ** 3 + 1)
    torch.testing.assert_close(cg(x), x ** 3 + 1)


def test_layout_of_input_tensors_is_read_and_guarded():
    """``x.is_contiguous()``, ``x.stride()``: answered from the real input and checked by the
    prologue, so a transposed input takes its own trace (a trace's values have no layout)."""
    def f(x):
        if x.is_contiguous():
            return x * 2
        return x * x.stride(0) + x.storage_offset()

    cf = thunder.compile(f)
    base = torch.randn(5, 4)
    inputs = [base[:, :3].t(), torch.randn(3, 4), base[1:, :3].t(), torch.randn(4, 3).t()]
    for x in inputs + inputs:
        torch.testing.assert_close(cf(x), f(x))
    assert thunder.cache_misses(cf) == 4  # each differs in contiguity, stride(0) or storage offset


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.mode = "double"

    def forward(self, x):
        y = self.lin(x)
        if self.training:
            y = y + 1
        if self.mode == "double":
            return y * 2
        return y * 3


def test_module_attributes_and_training_flag_are_guarded():
    m = Branchy()
    tm = thunder.compile(m)
    x = torch.randn(2, 4)
    torch.testing.assert_close(tm(x), m(x))
    tm.eval()  # the compiled module shares the original's attributes
    assert not m.training
    torch.testing.assert_close(tm(x), m(x))
    m.mode = "triple"
    torch.testing.assert_close(tm(x), m(x))
    assert thunder.cache_misses(tm) == 3


def test_replacing_a_submodule_or_parameter_is_seen():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    tm = thunder.compile(model)
    x = torch.randn(3, 4)
    torch.testing.assert_close(tm(x), model(x))
    model[1] = nn.Tanh()  # shared _modules dict: same change for tm
    torch.testing.assert_close(tm(x), model(x))
    model[0].weight = nn.Parameter(torch.randn(4, 4))
    torch.testing.assert_close(tm(x), model(x))


def test_dtype_change_of_module_retraces():
    model = nn.Linear(4, 2)
    tm = thunder.compile(model)
    x = torch.randn(3, 4)
    tm(x)
    tm.to(torch.float64)
    y = tm(x.double())
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, model(x.double()))


@pytest.mark.parametrize("shape", [(2, 3), (4, 3)])
def test_trace_input_metadata_in_prologue(shape):
    cf = thunder.compile(lambda x: x.sum(0))
    cf(torch.randn(shape))
    assert f"x.shape == {shape}" in thunder.last_prologue(cf)


# -- staleness on purpose: change what the program read after the first call ------------------------

SETTINGS = {"scale": 2.0, "mode": "add"}


class _Options:
    shift = 1.0


OPTIONS = _Options()


def test_global_dict_entries_and_global_object_attributes_are_not_served_stale():
    def f(x):
        y = x * SETTINGS["scale"] + OPTIONS.shift
        return y + 1 if SETTINGS["mode"] == "add" else y - 1

    cf = thunder.compile(f)
    x = torch.ones(3)
    torch.testing.assert_close(cf(x), f(x))
    try:
        SETTINGS["scale"] = 3.0
        torch.testing.assert_close(cf(x), f(x))
        SETTINGS["mode"] = "sub"
        torch.testing.assert_close(cf(x), f(x))
        OPTIONS.shift = -4.0
        torch.testing.assert_close(cf(x), f(x))
    finally:
        SETTINGS.update(scale=2.0, mode="add")
        OPTIONS.shift = 1.0


def test_closure_cell_holding_an_object_and_nested_closures():
    opts = _Options()
    opts.shift = 1.0
    power = 2

    def inner(x):
        return x ** power + opts.shift

    def outer(x):
        return inner(x) * 2

    cf = thunder.compile(outer)
    x = torch.arange(3.0)
    torch.testing.assert_close(cf(x), outer(x))
    opts.shift = 5.0
    torch.testing.assert_close(cf(x), outer(x))
    power = 3  # noqa: F841 (read through inner's closure cell)
    torch.testing.assert_close(cf(x), outer(x))


class Configured(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.lin = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        y = self.drop(self.lin(x))
        y = torch.relu(y) if self.config.act == "relu" else torch.tanh(y)
        return y * self.config.scale if self.config.use_scale else y


def test_config_object_fields_and_training_mode_are_not_served_stale():
    class Config:
        act, scale, use_scale = "relu", 2.0, True

    m = Configured(Config())
    m.eval()
    tm = thunder.compile(m)
    x = torch.randn(3, 4)
    torch.testing.assert_close(tm(x), m(x))
    for field_name, value in (("act", "tanh"), ("scale", 0.5), ("use_scale", False)):
        setattr(m.config, field_name, value)
        torch.testing.assert_close(tm(x), m(x))
    m.config = Config()  # a new config object with the original values
    torch.testing.assert_close(tm(x), m(x))
    tm.train()  # dropout becomes active: outputs differ from the eval program's
    y = tm(x)
    assert (y == 0).any() or not torch.allclose(y, m.eval()(x))


def test_python_scalar_bool_string_none_and_list_arguments():
    def f(x, k, flag, how, bias, sizes):
        y = x * k
        if flag:
            y = y + 1
        y = y.sum(0) if how == "sum" else y.mean(0)
        if bias is not None:
            y = y + bias
        return y * len(sizes)

    cf = thunder.compile(f)
    x, b = torch.randn(3, 2), torch.randn(2)
    calls = [(x, 2, True, "sum", None, [1]), (x, 3, True, "sum", None, [1]), (x, 3, False, "sum", None, [1]),
             (x, 3, False, "mean", None, [1]), (x, 3, False, "mean", b, [1]), (x, 3, False, "mean", b, [1, 2]),
             (x, 2, True, "sum", None, [1])]
    for args in calls:
        torch.testing.assert_close(cf(*args), f(*args))
    assert thunder.cache_hits(cf) == 1  # only the last call repeats an earlier one


def test_tensor_metadata_changes_retrace():
    def f(x):
        return (x * 2).sum(-1)

    cf = thunder.compile(f)
    base = torch.randn(2, 3)
    variants = [base, base.double(), torch.randn(5, 3), base.clone().requires_grad_(), base.to(torch.bfloat16),
                torch.randn(2, 3, 1).squeeze(-1), base.to("meta")]
    for x in variants:
        y = cf(x)
        assert y.dtype == f(x).dtype and y.shape == f(x).shape and y.device == x.device
        assert y.requires_grad == x.requires_grad
        if x.device.type != "meta":
            torch.testing.assert_close(y, f(x))
    assert thunder.cache_misses(cf) == len(variants) - 1  # the squeezed view matches the first entry


def test_module_attribute_written_outside_is_seen():
    m = Branchy()
    tm = thunder.compile(m)
    x = torch.randn(2, 4)
    tm(x)
    m.mode = "triple"
    torch.testing.assert_close(tm(x), m(x))
    with torch.no_grad():
        m.lin.weight.mul_(2)  # in-place parameter change: same program, new values
    torch.testing.assert_close(tm(x), m(x))


def test_inputs_named_like_prologue_parameters_hit_the_cache_and_stay_correct():
    """Keyword inputs called ``args``/``kwargs``/``module`` and keyword order differing from the
    signature's (HF passes ``cache_position`` and ``position_ids`` by keyword) must neither shadow
    the prologue's own names nor be fetched from the wrong argument."""
    def f(x, c=None, b=None, **kwargs):
        return x * 2 + c - b * kwargs["module"]

    def g(x, config=None, **kwargs):
        return x * config.scale - kwargs["other"]  # config.scale is guarded after the inputs

    config = types.SimpleNamespace(scale=2.0)
    for fn, keys in ((f, ("b", "c", "module")), (g, ("other",))):
        compiled = thunder.compile(fn)
        for _ in range(3):
            x, *values = (torch.randn(3) for _ in range(1 + len(keys)))
            call = dict(config=config, **dict(zip(keys, values))) if fn is g else dict(zip(keys, values))
            torch.testing.assert_close(compiled(x, **call), fn(x, **call))
        assert thunder.cache_misses(compiled) == 1 and thunder.cache_hits(compiled) == 2


def test_tensors_in_module_containers_are_inputs_not_constants():
    """Tensors kept in a plain list or dict attribute and handed to a torch op inside a container:
    replacing one (or the whole list) between calls is seen, never answered from a stale trace."""
    class Tables(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rows = [torch.zeros(1, 4)]
            self.named = {"extra": torch.zeros(1, 4)}

        def forward(self, x):
            return torch.cat([x] + self.rows + list(self.named.values()))

    model = Tables()
    compiled = thunder.compile(model)
    x = torch.randn(2, 4)
    for change in (lambda: None,
                   lambda: model.rows.__setitem__(0, torch.ones(1, 4)),
                   lambda: setattr(model, "rows", [torch.full((1, 4), 5.0)]),
                   lambda: model.named.__setitem__("extra", torch.full((1, 4), 7.0))):
        change()
        torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=0)
    assert thunder.cache_misses(compiled) == 1
    model.rows.append(torch.ones(1, 4))  # a new structure: a new trace
    torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=0)
    assert thunder.cache_misses(compiled) == 2


def test_parameters_checked_together_miss_and_hit_like_one_by_one():
    """The prologue checks the parameters' metadata in one call (torch's C++ guard, backed by the
    Python checks): the same misses and hits as checking them one by one."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    tm = thunder.compile(model)
    x = torch.randn(3, 4)
    torch.testing.assert_close(tm(x), model(x))
    if _tensor_guards([x]) is not None:  # this torch has the C++ guard: the prologue uses it
        assert "_guard_tensors" in tm._thunder_compiled.last_entry.prologue.fn.__globals__
    # strides are free: a transposed copy with the same shape hits; so does a Parameter given as input
    xt = torch.randn(4, 3).t()
    torch.testing.assert_close(tm(xt), model(xt))
    torch.testing.assert_close(tm(nn.Parameter(x, requires_grad=False)), model(x))
    assert thunder.cache_misses(tm) == 1
    model[2].weight.requires_grad_(False)  # the same parameter object, another requires_grad
    out = tm(x)
    assert thunder.cache_misses(tm) == 2
    out.sum().backward()
    assert model[2].weight.grad is None and model[0].weight.grad is not None
    model.double()  # the same parameter objects, another dtype
    torch.testing.assert_close(tm(x.double()), model(x.double()))
    assert thunder.cache_misses(tm) == 3
    model[4].weight = nn.Parameter(torch.randn(2, 8, dtype=torch.float64))
    torch.testing.assert_close(tm(x.double()), model(x.double()))
    model[4] = nn.Linear(8, 5).double()  # another output shape
    assert tm(x.double()).shape == (3, 5)


def test_retracing_again_and_again_warns_with_the_failing_check():
    state = types.SimpleNamespace(step=0)

    def f(x):
        state.step += 1
        return x * state.step

    compiled = thunder.compile(f)
    with pytest.warns(thunder.RetraceWarning, match=r"_v = .*\.step; if type\(_v\) is not int or _v != 6\. "):
        for step in range(1, 9):
            torch.testing.assert_close(compiled(torch.ones(2)), torch.full((2,), float(step)))


def test_past_the_retrace_limit_new_calls_run_eagerly_and_known_ones_stay_compiled():
    """A length that grows every call (a decoding loop with a growing cache) would trace forever."""
    compiled = thunder.compile(lambda x: x.sin() * 2, retrace_limit=3)
    with pytest.warns(thunder.RetraceWarning, match=r"now run eagerly \(retrace_limit=3\)"):
        for n in range(1, 7):
            x = torch.randn(n)
            torch.testing.assert_close(compiled(x), x.sin() * 2)
    assert thunder.cache_misses(compiled) == 6 and len(compiled.cache) == 3
    hits = thunder.cache_hits(compiled)
    compiled(torch.randn(2))  # a length traced before the limit: still compiled
    assert thunder.cache_hits(compiled) == hits + 1
    with pytest.raises(ValueError, match="retrace_limit"):
        thunder.compile(lambda x: x, retrace_limit=0)


class _Scaled(nn.Module):
    def __init__(self, extra: nn.Module | None = None):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.extra = extra if extra is not None else nn.Identity()
        self.scale = 2.0

    def forward(self, x):
        return self.extra(self.fc(x)) * self.scale


def _entry(compiled):
    return compiled._thunder_compiled.cache[0]


SPECULATE = {"speculative_prologue": True}  # the default speculates for CUDA programs only


def test_a_pure_entry_starts_before_its_value_checks_and_drops_the_result_when_they_fail(prologue_mode):
    """The only cache entry of a side-effect-free trace runs its computation once the tensor inputs
    pass, checking Python values and hooks after: a changed value must still never be served."""
    m = _Scaled()
    tm = thunder.compile(m, **SPECULATE)
    x = torch.randn(3, 4, requires_grad=True)
    torch.testing.assert_close(tm(x), m(x))
    assert _entry(tm).speculative and _entry(tm).prologue.staged is not None
    by_default = thunder.compile(_Scaled())
    by_default(x)
    # by default only CUDA entries speculate (a CPU computation blocks: nothing to overlap)
    assert _entry(by_default).speculative == (prologue_mode == "speculative")
    m.scale = 3.0
    torch.testing.assert_close(tm(x), m(x))
    handle = m.fc.register_forward_hook(lambda mod, args, out: out + 1)
    y = tm(x)
    torch.testing.assert_close(y, m(x))
    y.sum().backward()  # the graph of the dropped result is not the one that trains
    expected = torch.autograd.grad(m(x).sum(), x)[0]
    x.grad = None
    tm(x).sum().backward()
    torch.testing.assert_close(x.grad, expected)
    handle.remove()
    assert thunder.cache_misses(tm) == 3


def test_entries_that_write_their_inputs_or_draw_random_numbers_never_start_early():
    """A BatchNorm in training updates its running statistics in place, dropout advances the
    generator: a computation started and dropped would do either twice."""
    m = _Scaled(nn.BatchNorm1d(4))
    reference = _Scaled(nn.BatchNorm1d(4))
    reference.load_state_dict(m.state_dict())
    tm = thunder.compile(m, **SPECULATE)
    x = torch.randn(8, 4)
    tm(x), reference(x)
    assert not _entry(tm).speculative
    m.scale = reference.scale = 5.0
    torch.testing.assert_close(tm(x), reference(x))
    torch.testing.assert_close(m.extra.running_mean, reference.extra.running_mean)

    dropped = _Scaled(nn.Dropout(0.5))
    td = thunder.compile(dropped, **SPECULATE)
    torch.manual_seed(0)
    first = td(x)
    dropped.scale = 7.0
    second = td(x)
    assert not _entry(td).speculative
    torch.manual_seed(0)
    dropped.scale = 2.0
    torch.testing.assert_close(first, dropped(x))
    dropped.scale = 7.0
    torch.testing.assert_close(second, dropped(x))


def test_with_several_entries_every_check_comes_first():
    m = _Scaled()
    tm = thunder.compile(m, **SPECULATE)
    x = torch.randn(3, 4)
    tm(x)
    tm(torch.randn(5, 4))
    calls = []
    for entry in tm._thunder_compiled.cache:
        run = entry.computation
        entry.computation = lambda *a, _run=run: calls.append(1) or _run(*a)
    m.scale = 4.0
    torch.testing.assert_close(tm(x), m(x))
    assert calls == []  # neither old entry ran: the new one was traced and run directly
