"""thunder-cudagraphs against eager: inference, training with optimizer steps, changing batch sizes,
dropout, in-place inputs, kept outputs, partial capture, and the CPU fallback."""

import copy
import warnings

import pytest
import thunder
import torch
from thunder_cudagraphs import CUDAGraphsPlugin

gpu = pytest.mark.gpu


class _CallingRunner:
    """Runs a region as is: exercises region planning where no GPU is present."""

    def __init__(self, fn, info, **kwargs):
        self.fn, self.info, self.calls = fn, info, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _mlp(dropout=0.0):
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(32, 8))


def _replays(plugin):
    return sum(getattr(r, "replays", 0) for r in plugin.runners)


# -- CPU: entry points, options, fallback, planning -----------------------------------------------

def test_entry_points_and_string_plugin_name():
    names = {p.name: p.distribution for p in thunder.plugins.available()}
    assert names.get("cudagraphs") == "thunder-cudagraphs"
    assert names.get("reduce-overhead") == "thunder-cudagraphs"
    cf = thunder.compile(lambda x: x * 2, plugins="reduce-overhead", cudagraphs_max_slots=3)
    assert cf.options["cudagraphs_max_slots"] == 3


def test_cpu_fallback_warns_and_matches_eager():
    model = _mlp()
    reference = copy.deepcopy(model)
    tm = thunder.compile(model, plugins="reduce-overhead")
    x = torch.randn(4, 16)
    with pytest.warns(UserWarning, match="thunder-cudagraphs"):
        out = tm(x)
    torch.testing.assert_close(out, reference(x))
    out.sum().backward()
    reference(x).sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_planning_splits_around_host_operations():
    plugin = CUDAGraphsPlugin(device_type="cpu", runner=_CallingRunner)

    def f(x, w):
        y = torch.sin(x @ w) * 2
        torch.manual_seed(1)            # host state: outside the graphs
        z = y.sum().item()              # waits for the device: outside the graphs
        return torch.relu(y) * 3 + 1, y.cos(), z

    cf = thunder.compile(f, plugins=[plugin])
    x, w = torch.randn(4, 4), torch.randn(4, 4)
    with pytest.warns(UserWarning, match=r"cannot be captured: .*manual_seed.*item"):
        out = cf(x, w)
    torch.testing.assert_close(out, f(x, w))
    source = str(thunder.last_traces(cf)[-1])
    assert "cudagraphs.region_2(" in source  # before the seed, before the item, after it
    assert [r.calls for r in plugin.runners] == [1, 1, 1]
    # small returned outputs are copied out of the graph, intermediates are not
    assert plugin.runners[0].info.copy_out == [False]
    assert all(plugin.runners[2].info.copy_out)


# -- GPU ----------------------------------------------------------------------------------------

@gpu
def test_inference_matches_eager_and_replays():
    model = _mlp().cuda().eval()
    plugin = CUDAGraphsPlugin()
    tm = thunder.compile(model, plugins=[plugin])
    with torch.no_grad():
        outs = []
        for i in range(6):
            x = torch.randn(4, 16, device="cuda")
            outs.append((tm(x), model(x)))
    for got, expected in outs:  # every result kept: none was overwritten by a later replay
        torch.testing.assert_close(got, expected)
    assert _replays(plugin) >= 3
    assert "cudagraphs.region_0" in str(thunder.last_traces(tm)[-1])


@gpu
def test_training_with_optimizer_and_changing_batch_sizes():
    torch.manual_seed(0)
    model = _mlp().cuda()
    reference = copy.deepcopy(model)
    plugin = CUDAGraphsPlugin()
    tm = thunder.compile(model, plugins=[plugin])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for step in range(12):
        batch = (4, 8, 4, 16)[step % 4]
        x = torch.randn(batch, 16, device="cuda")
        target = torch.randn(batch, 8, device="cuda")
        loss = torch.nn.functional.mse_loss(tm(x), target)
        ref_loss = torch.nn.functional.mse_loss(reference(x), target)
        loss.backward()
        ref_loss.backward()
        torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-4)
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    assert _replays(plugin) > 0  # forward and backward graphs replayed


@gpu
def test_gradient_accumulation_keeps_residuals_apart():
    model = _mlp().cuda()
    reference = copy.deepcopy(model)
    tm = thunder.compile(model, plugins="cudagraphs")
    for _ in range(5):
        xs = [torch.randn(4, 16, device="cuda") for _ in range(2)]
        losses = [tm(x).square().mean() for x in xs]  # two forwards before any backward
        sum(losses).backward()
        sum(reference(x).square().mean() for x in xs).backward()
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)
            p.grad = q.grad = None


@gpu
def test_dropout_inside_graphs_is_random_and_consistent():
    plugin = CUDAGraphsPlugin()

    def f(x):
        return torch.nn.functional.dropout(x, p=0.5, training=True)

    cf = thunder.compile(f, plugins=[plugin])
    masks = []
    for _ in range(6):
        x = torch.ones(64, 64, device="cuda", requires_grad=True)
        y = cf(x)
        y.backward(torch.ones_like(y))
        keep = y != 0
        torch.testing.assert_close(y, keep.float() * 2)       # scaled by 1 / (1 - p)
        torch.testing.assert_close(x.grad, keep.float() * 2)  # backward used the forward's mask
        masks.append(keep)
    assert _replays(plugin) > 0
    assert not torch.equal(masks[-1], masks[-2])  # replays draw new numbers
    assert 0.4 < masks[-1].float().mean().item() < 0.6


@gpu
def test_in_place_updates_of_inputs_and_parameters():
    cache = torch.zeros(8, 4, device="cuda")
    weight = torch.nn.Parameter(torch.randn(4, 4, device="cuda"))

    def step(cache, pos, value):
        cache.index_copy_(0, pos, value)
        return cache.sum(0) @ weight

    cf = thunder.compile(step, plugins="reduce-overhead")
    ref_cache = cache.clone()
    for i in range(8):
        pos = torch.tensor([i], device="cuda")
        value = torch.randn(1, 4, device="cuda")
        with torch.no_grad():
            out = cf(cache, pos, value)
            ref_cache.index_copy_(0, pos, value)
            expected = ref_cache.sum(0) @ weight
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(cache, ref_cache)
            weight.add_(0.01)  # an optimizer-like in-place update is seen by the next replay


@gpu
def test_same_tensor_as_static_buffer_and_changed_contents():
    cf = thunder.compile(lambda x: (x * 3).sin(), plugins="cudagraphs")
    x = torch.randn(32, device="cuda")
    for _ in range(5):
        x.uniform_()  # same tensor, new contents
        torch.testing.assert_close(cf(x), (x * 3).sin())


@gpu
def test_partial_capture_around_host_copy():
    plugin = CUDAGraphsPlugin()

    def f(x):
        y = torch.sin(x) * 2
        host = y.cpu() + 1             # CPU part stays outside the graphs
        return y.cos(), host

    cf = thunder.compile(f, plugins=[plugin])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            x = torch.randn(16, device="cuda")
            got = cf(x)
            torch.testing.assert_close(got, f(x))
    assert any("cannot be captured" in str(w.message) and "cpu" in str(w.message) for w in caught)
    assert _replays(plugin) > 0


@gpu
def test_hf_llama_inference_matches_eager():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(config).cuda().eval()
    plugin = CUDAGraphsPlugin()
    tm = thunder.compile(model, plugins=[plugin])
    with torch.no_grad():
        for _ in range(5):
            ids = torch.randint(0, 512, (2, 8), device="cuda")
            got = tm(ids, use_cache=False).logits
            torch.testing.assert_close(got, model(ids, use_cache=False).logits, atol=1e-4, rtol=1e-4)
    assert _replays(plugin) > 0
