"""FP8 emulation on CPU: the scaling math against a float reference written here, state, options,
errors, and training a compiled MLP and a small litgpt GPT with loss and gradients close to float."""

import copy

import pytest
import thunder
import thunder_fp8
import torch
from thunder_fp8 import scaling
from torch import nn

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
MAX = {E4M3: 448.0, E5M2: 57344.0}


# -- a float reference of the scaling math, independent of the plugin's code ----------------------

def ref_qdq(t, dtype, dim=None, amax=None):
    """Quantize-dequantize in float32: scale = max / amax (per tensor, or reducing ``dim``)."""
    t = t.float()
    if amax is None:
        amax = t.abs().amax() if dim is None else t.abs().amax(dim, keepdim=True)
    scale = MAX[dtype] / amax.float().clamp(min=1e-12)
    q = (t * scale).clamp(-MAX[dtype], MAX[dtype]).to(dtype)
    return q.float() / scale


def ref_linear(x, w, b, g, recipe, grad_dtype=E5M2, amaxes=None):
    """Output and (input, weight, bias) gradients of the FP8 linear, computed in float32."""
    x2, g2 = x.reshape(-1, x.shape[-1]).float(), g.reshape(-1, g.shape[-1]).float()
    if recipe == "rowwise":
        out = ref_qdq(x2, E4M3, 1) @ ref_qdq(w, E4M3, 1).t()
        dx = ref_qdq(g2, grad_dtype, 1) @ ref_qdq(w, E4M3, 0)
        dw = ref_qdq(g2.t(), grad_dtype, 1) @ ref_qdq(x2, E4M3, 0)
    else:
        ax, aw, ag = amaxes or (None, None, None)
        xq, wq, gq = ref_qdq(x2, E4M3, amax=ax), ref_qdq(w, E4M3, amax=aw), ref_qdq(g2, grad_dtype, amax=ag)
        out, dx, dw = xq @ wq.t(), gq @ wq, gq.t() @ xq
    if b is not None:
        out = out + b.float()
    return out.reshape(*x.shape[:-1], w.shape[0]), dx.reshape(x.shape), dw, g2.sum(0)


@pytest.mark.parametrize("dtype", [E4M3, E5M2])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_quantize_matches_reference(dtype, dim):
    t = torch.randn(64, 48) * torch.logspace(-3, 3, 48)  # columns over six decades
    q, inv, amax = scaling.quantize(scaling.EAGER, t, dtype, dim)
    assert q.dtype == dtype
    expected_amax = t.abs().amax() if dim is None else t.abs().amax(dim, keepdim=True)
    torch.testing.assert_close(amax, expected_amax, rtol=0, atol=0)
    torch.testing.assert_close(q.float() * inv, ref_qdq(t, dtype, dim), rtol=1e-6, atol=0)
    # the largest magnitude maps to the format's max; normal numbers keep their mantissa bits
    assert q.float().abs().max() == MAX[dtype]
    big = t.abs() > expected_amax / 100
    rel = ((q.float() * inv - t).abs() / t.abs())[big]
    assert rel.max() <= {E4M3: 2 ** -4, E5M2: 2 ** -3}[dtype]


def test_zero_tensor_quantizes_to_zero():
    q, inv, amax = scaling.quantize(scaling.EAGER, torch.zeros(16, 16), E4M3)
    assert torch.isfinite(inv) and (q.float() == 0).all() and amax == 0


def _layer(in_f=32, out_f=48, bias=True):
    torch.manual_seed(1)
    return nn.Linear(in_f, out_f, bias=bias)


@pytest.mark.parametrize("recipe", ["tensorwise", "delayed", "rowwise"])
def test_compiled_linear_matches_float_reference(recipe):
    layer = _layer()
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    tm = thunder.compile(layer, plugins=[thunder_fp8.FP8(recipe, emulate=True)])
    x = torch.randn(2, 8, 32, requires_grad=True)
    g = torch.randn(2, 8, 48)
    out = tm(x)
    out.backward(g)
    grad_dtype = E4M3 if recipe == "rowwise" else E5M2
    ref_out, ref_dx, ref_dw, ref_db = ref_linear(x.detach(), w, b, g, recipe, grad_dtype)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, ref_dx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, ref_dw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.bias.grad, ref_db, rtol=1e-5, atol=1e-5)
    # and FP8 is not a no-op: the result differs from the float linear by quantization error
    assert not torch.allclose(out, x @ w.t() + b, rtol=1e-4, atol=1e-4)


def test_traces_call_the_fp8_matmul():
    tm = thunder.compile(_layer(), plugins=[thunder_fp8.FP8(emulate=True)])
    tm(torch.randn(4, 32, requires_grad=True)).sum().backward()
    assert str(thunder.last_traces(tm)[-1]).count("fp8.scaled_mm(") == 1
    backward = str(tm._thunder_compiled.last_entry.backward_traces[-1])
    assert backward.count("fp8.scaled_mm(") == 2 and "float8_e5m2" in backward


@pytest.mark.parametrize("recipe", ["tensorwise", "delayed"])
def test_backward_reads_the_forward_fp8_operands(recipe):
    """The per-tensor recipes cast x and the weight once, writing the transposed FP8 copies the
    backward matmuls read in the same pass: the backward casts neither again, and the forward saves
    FP8 copies, not the bf16/float activation. Two layers reading one input (an MLP's fc1 and fc2)
    quantize it once."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(32, 48, bias=False), nn.Linear(32, 48, bias=False)

        def forward(self, x):
            return self.a(x) * self.b(x)

    model = TwoHeads()
    reference = copy.deepcopy(model)
    thunder_fp8.convert_to_fp8(reference, thunder_fp8.FP8Config(recipe=recipe, emulate=True, skip=()))
    tm = thunder.compile(model, plugins=[thunder_fp8.FP8(recipe, emulate=True, skip=())])
    x = torch.randn(4, 8, 32)
    g = torch.randn(4, 8, 48)
    for m in (tm, reference):
        m(x.clone().requires_grad_()).backward(g)
    for p, rp in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, rp.grad)
    forward = str(thunder.last_traces(tm)[-1])
    backward = thunder.last_backward_traces(tm)[-1]
    # each weight: one cast (both layouts); x: one (the delayed recipe's history writes keep CSE
    # from merging the two layers' identical casts of x)
    assert forward.count("fp8.cast_both_layouts(") == (3 if recipe == "tensorwise" else 4)
    assert "torch.float8_e4m3fn)" not in str(backward)  # nothing is cast to e4m3 again
    # neither x (float32 [4, 8, 32]) nor a weight (float32 [48, 32]) is saved for the backward
    saved = [a for a in backward.args if isinstance(a, thunder.core.proxies.TensorProxy)]
    assert not [a for a in saved if a.dtype == torch.float32 and a.ndim and a.shape[-1] == 32]
    assert {a.dtype for a in saved} >= {E4M3}


def test_delayed_scaling_history_and_state_dict():
    layer = _layer(bias=False)
    tm = thunder.compile(layer, plugins=[thunder_fp8.FP8("delayed", emulate=True, history_len=4)])
    xs = [(torch.randn(8, 32) * (i + 1)).requires_grad_() for i in range(3)]
    gs = [torch.randn(8, 48) * 10 ** -i for i in range(3)]
    w = layer.weight.detach().clone()
    amax_hist = []
    for i, (x, g) in enumerate(zip(xs, gs)):
        out = tm(x)
        # the scale comes from the history (max of past amaxes), the current amax on the first step
        past = amax_hist or [(x.abs().amax(), w.abs().amax(), g.abs().amax())]
        used = [max(a[j] for a in past) for j in range(3)]
        ref_out, ref_dx, ref_dw, _ = ref_linear(x.detach(), w, None, g, "delayed", amaxes=used)
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
        out.backward(g)
        # the backward multiplies the FP8 values of x and w the forward multiplied (the same scales)
        now = (x.abs().amax(), w.abs().amax(), g.abs().amax())
        torch.testing.assert_close(x.grad, ref_dx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.weight.grad, ref_dw, rtol=1e-5, atol=1e-5)
        layer.weight.grad = None
        amax_hist.insert(0, now)
    history = layer.fp8_amax_history
    expected = torch.tensor([[a[r].item() for a in amax_hist] + [0.0] for r in range(3)])
    torch.testing.assert_close(history, expected)
    # state_dict carries the history; a fresh model loading it computes the same scales
    state = layer.state_dict()
    assert "fp8_amax_history" in state
    fresh = _layer(bias=False)
    fresh_tm = thunder.compile(fresh, plugins=[thunder_fp8.FP8("delayed", emulate=True, history_len=4)])
    fresh.load_state_dict(state)
    x = torch.randn(8, 32)
    torch.testing.assert_close(fresh_tm(x), tm(x))


def test_eager_converted_layer_matches_compiled():
    layer = _layer()
    eager = copy.deepcopy(layer)
    thunder_fp8.convert_to_fp8(eager, thunder_fp8.FP8Config("tensorwise", emulate=True))
    tm = thunder.compile(layer, plugins=[thunder_fp8.FP8(emulate=True)])
    x = torch.randn(4, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    tm(x).square().sum().backward()
    eager(x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, eager.weight.grad)


def test_which_layers_are_converted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Linear(32, 64)
            self.odd = nn.Linear(64, 40 + 2)   # not a multiple of 16
            self.down = nn.Linear(42, 32)
            self.lm_head = nn.Linear(32, 64)

        def forward(self, x):
            return self.lm_head(self.down(self.odd(self.up(x))))

    plugin = thunder_fp8.FP8(emulate=True)
    thunder.compile(Net(), plugins=[plugin])
    assert plugin.converted == ["up"]
    plugin = thunder_fp8.FP8(emulate=True, skip=())
    net = Net()
    thunder.compile(net, plugins=[plugin])
    assert plugin.converted == ["up", "lm_head"] and isinstance(net.lm_head, thunder_fp8.FP8Linear)
    plugin = thunder_fp8.FP8(emulate=True, skip=(), filter_fn=lambda name, m: m.out_features > 32)
    thunder.compile(Net(), plugins=[plugin])
    assert plugin.converted == ["up", "lm_head"]
    plugin = thunder_fp8.FP8(emulate=True, include=("up",))
    thunder.compile(Net(), plugins=[plugin])
    assert plugin.converted == ["up"]
    with pytest.raises(ValueError, match="recipe"):
        thunder_fp8.FP8("mxfp8")


def test_entry_point_and_clear_error_without_fp8_device():
    assert "fp8" in {p.name for p in thunder.plugins.available()}
    tm = thunder.compile(_layer(), plugins=["fp8"])
    with pytest.raises(thunder_fp8.FP8UnsupportedError, match=r"emulate=True"):
        tm(torch.randn(4, 32))


def test_autocast_composes():
    layer = _layer()
    eager = copy.deepcopy(layer)
    thunder_fp8.convert_to_fp8(eager, thunder_fp8.FP8Config(emulate=True))
    tm = thunder.compile(layer, plugins=[thunder_fp8.FP8(emulate=True)])
    x = torch.randn(4, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tm(x)
        expected = eager(x)
    assert out.dtype == torch.bfloat16 == expected.dtype
    torch.testing.assert_close(out, expected)
    out.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and x.grad is not None


# -- training ------------------------------------------------------------------------------------

def _cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


def _train(model, step_input, steps, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses, first_grads = [], None
    for i in range(steps):
        loss = step_input(model, i)
        loss.backward()
        if first_grads is None:
            first_grads = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, first_grads


@pytest.mark.parametrize("recipe", ["tensorwise", "delayed", "rowwise"])
def test_mlp_trains_like_float(recipe):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 16))
    reference = copy.deepcopy(model)
    teacher = nn.Sequential(nn.Linear(64, 16), nn.Tanh())
    data = [torch.randn(32, 64) for _ in range(40)]

    def step(m, i):
        x = data[i]
        return torch.nn.functional.mse_loss(m(x), teacher(x).detach())

    plugin = thunder_fp8.FP8(recipe, emulate=True, skip=())
    tm = thunder.compile(model, plugins=[plugin])
    assert len(plugin.converted) == 3
    losses, grads = _train(tm, step, 40)
    ref_losses, ref_grads = _train(reference, step, 40)
    for g, rg in zip(grads, ref_grads):
        assert _cosine(g, rg) > 0.99
    assert losses[-1] < 0.5 * losses[0]
    assert abs(losses[-1] - ref_losses[-1]) < 0.1 * ref_losses[-1] + 1e-3


def test_litgpt_gpt_trains_like_float():
    litgpt = pytest.importorskip("litgpt")
    config = litgpt.Config.from_name("Llama-3.2-1B", n_layer=2, n_embd=64, n_head=4, n_query_groups=2,
                                     intermediate_size=128, vocab_size=256, padded_vocab_size=256, block_size=64)
    torch.manual_seed(0)
    model = litgpt.GPT(config)
    reference = copy.deepcopy(model)
    plugin = thunder_fp8.FP8(emulate=True)
    tm = thunder.compile(model, plugins=[plugin])
    assert "lm_head" not in plugin.converted and len(plugin.converted) == 2 * 5  # qkv, proj, fc_1, fc_2, mlp.proj
    ids = torch.randint(0, 256, (4, 33))

    def step(m, i):
        logits = m(ids[:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())

    losses, grads = _train(tm, step, 12, lr=3e-3)
    ref_losses, ref_grads = _train(reference, step, 12, lr=3e-3)
    assert "fp8.scaled_mm" in str(thunder.last_traces(tm)[-1])
    assert abs(losses[0] - ref_losses[0]) < 0.01 * ref_losses[0]
    for g, rg in zip(grads, ref_grads):
        assert _cosine(g, rg) > 0.98
    assert losses[-1] < losses[0] - 0.5
    assert abs(losses[-1] - ref_losses[-1]) < 0.05 * ref_losses[-1]


def test_delayed_scaling_history_writes_do_not_split_fusion_regions():
    """Each layer's history update is an in-place write; the plugin moves them after the fused
    region, where they become one batched write, so a forward (and a backward) of several FP8
    layers is one region, and the results and histories are those of the eager converted model."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 32))
    reference = copy.deepcopy(model)
    config = dict(emulate=True, history_len=4, skip=())
    compiled = thunder.compile(model, plugins=[thunder_fp8.FP8("delayed", **config)],
                               executors=["torchcompile", "fp8", "torch"])
    thunder_fp8.convert_to_fp8(reference, thunder_fp8.FP8Config(recipe="delayed", **config))
    for _ in range(3):
        x = torch.randn(8, 32)
        out, expected = compiled(x), reference(x)
        torch.testing.assert_close(out, expected)
        out.square().sum().backward()
        expected.square().sum().backward()
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    for trace in (thunder.last_traces(compiled)[-1], thunder.last_backward_traces(compiled)[-1]):
        lines = str(trace).splitlines()
        regions = [i for i, line in enumerate(lines) if "torchcompile.torchcompile_" in line and " = " in line]
        # every record of the trace in one batched call, after the region
        records = [i for i, line in enumerate(lines) if "fp8.record_amax" in line and not line.lstrip().startswith("#")]
        assert len(regions) == 1 and len(records) == 1 and records[0] > regions[0]
        assert "fp8.record_amaxes(" in lines[records[0]]
