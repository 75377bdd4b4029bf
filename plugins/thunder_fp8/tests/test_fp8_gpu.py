"""Real FP8 on the GPU (compute capability >= 8.9): torch._scaled_mm in the final traces, outputs
and gradients against bf16 within FP8 tolerances, and against emulation (same quantization)."""

import copy

import pytest
import thunder
import thunder_fp8
import torch
from torch import nn

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_fp8():
    if not thunder_fp8.fp8_supported("cuda"):
        pytest.skip("needs a GPU with FP8 tensor cores (compute capability >= 8.9)")


def _mlp():
    return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 256)).cuda().bfloat16()


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _run(model, x, g):
    x = x.detach().clone().requires_grad_()
    out = model(x)
    out.backward(g)
    grads = [p.grad.detach().clone() for p in model.parameters()]
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("recipe", ["tensorwise", "delayed", "rowwise"])
def test_fp8_matches_bf16(recipe):
    base = _mlp()
    reference = copy.deepcopy(base)
    tm = thunder.compile(base, plugins=[thunder_fp8.FP8(recipe)])
    x = torch.randn(4, 120, 256, device="cuda", dtype=torch.bfloat16)  # 480 tokens: not a tile multiple
    g = torch.randn(4, 120, 256, device="cuda", dtype=torch.bfloat16)
    out, dx, grads = _run(tm, x, g)
    ref_out, ref_dx, ref_grads = _run(reference, x, g)
    # FP8 error against bf16: a few percent (e4m3 has 3 mantissa bits, e5m2 2)
    assert _rel(out, ref_out) < 0.06
    assert _rel(dx, ref_dx) < 0.12
    for gr, rg in zip(grads, ref_grads):
        assert _rel(gr, rg) < 0.12
    final = str(thunder.last_traces(tm)[-1])
    assert final.count("fp8.scaled_mm(") == 2 and ", False)" in final  # the real kernel, not emulation
    backward = str(tm._thunder_compiled.last_entry.backward_traces[-1])
    assert backward.count("fp8.scaled_mm(") == 4
    # the casts and amaxes went into fusion regions
    assert "torchcompile" in final


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_fp8_kernel_matches_emulation(recipe):
    """One layer (no re-quantization of a result in between, which turns accumulation-order
    differences into whole FP8 steps): the kernel and the emulation quantize identically."""
    base = nn.Linear(256, 512).cuda().bfloat16()
    emulated = copy.deepcopy(base)
    tm = thunder.compile(base, plugins=[thunder_fp8.FP8(recipe)])
    te = thunder.compile(emulated, plugins=[thunder_fp8.FP8(recipe, emulate=True)])
    x = torch.randn(480, 256, device="cuda", dtype=torch.bfloat16)
    g = torch.randn(480, 512, device="cuda", dtype=torch.bfloat16)
    out, dx, grads = _run(tm, x, g)
    emu_out, emu_dx, emu_grads = _run(te, x, g)
    assert _rel(out, emu_out) < 0.01 and _rel(dx, emu_dx) < 0.01
    for gr, eg in zip(grads, emu_grads):
        assert _rel(gr, eg) < 0.01


def test_scaled_mm_kernel_runs():
    """Counted by the profiler, which sees the calls wherever they come from (a fusion region's
    compiled code calls the kernel without going through Python's torch._scaled_mm)."""
    tm = thunder.compile(_mlp(), plugins=["fp8"])
    x = torch.randn(64, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    tm(x).float().sum().backward()  # compiles
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        tm(x).float().sum().backward()
    calls = [e for e in prof.events() if e.name == "aten::_scaled_mm"]
    assert len(calls) == 6  # forward: two layers; backward: data and weight gradient of each
    backward = str(thunder.last_backward_traces(tm)[-1])
    assert str(thunder.last_traces(tm)[-1]).count("fp8.scaled_mm(") == 2
    assert backward.count("fp8.scaled_mm(") == 4 and "float8_e5m2" in backward


def test_litgpt_gpt_fp8_close_to_bf16():
    litgpt = pytest.importorskip("litgpt")
    config = litgpt.Config.from_name("Llama-3.2-1B", n_layer=2, n_embd=256, n_head=8, n_query_groups=2,
                                     intermediate_size=512, vocab_size=1024, padded_vocab_size=1024, block_size=256)
    with torch.device("cuda"):
        model = litgpt.GPT(config).bfloat16()
    reference = copy.deepcopy(model)
    tm = thunder.compile(model, plugins=[thunder_fp8.FP8()])
    ids = torch.randint(0, 1024, (2, 129), device="cuda")

    def loss_of(m):
        logits = m(ids[:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())

    loss, ref_loss = loss_of(tm), loss_of(reference)
    loss.backward()
    ref_loss.backward()
    assert abs(loss.item() - ref_loss.item()) < 0.02 * ref_loss.item()
    for p, rp in zip(model.parameters(), reference.parameters()):
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten().float(), rp.grad.flatten().float(), dim=0)
        assert cos > 0.97
    assert "fp8.scaled_mm" in str(thunder.last_traces(tm)[-1])


@pytest.mark.parametrize("fp8_dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("shape, dtype, transposed", [((480, 256), torch.bfloat16, False),
                                                      ((33, 17), torch.float32, False),
                                                      ((100, 300), torch.bfloat16, True)])
def test_two_layout_cast_kernel_is_exact(fp8_dtype, shape, dtype, transposed):
    """The Triton kernel of ``cast_both_layouts`` writes the bytes torch's cast writes (on the CPU),
    in both layouts: rounding, saturation of out-of-range values, NaN, ragged tile edges and a
    strided input."""
    t = torch.randn(shape[::-1] if transposed else shape, dtype=dtype) * 300
    t = t.t() if transposed else t
    t[0, :3] = torch.tensor([float("nan"), 1e9, -1e9], dtype=dtype)
    scale = torch.tensor(1.7)
    q, qt = torch.ops.thunder_fp8.cast_both_layouts(t.cuda(), scale.cuda(), fp8_dtype)
    ref_q, ref_qt = torch.ops.thunder_fp8.cast_both_layouts(t, scale, fp8_dtype)
    for got, ref in ((q.cpu(), ref_q), (qt.cpu(), ref_qt)):
        assert got.shape == ref.shape and got.is_contiguous()
        nan = ref.float().isnan()
        assert torch.equal(got.float().isnan(), nan)
        assert torch.equal(got.view(torch.uint8)[~nan], ref.view(torch.uint8)[~nan])
