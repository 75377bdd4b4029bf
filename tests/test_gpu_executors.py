"""CUDA executors: fused attention in training, torch.compile fusion regions, compared with eager."""

import pytest
import thunder
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu


def _leaves(*shapes, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(s, device="cuda", dtype=dtype, generator=g).requires_grad_() for s in shapes]


def _grads(fn, inputs, weight):
    out = fn(*inputs)
    return [out.detach(), *torch.autograd.grad((out.float() * weight).sum(), inputs)]


@pytest.mark.parametrize("cudnn", [True, False], ids=["cudnn_allowed", "cudnn_off"])
@pytest.mark.parametrize("case", ["causal", "gqa", "float_mask", "bool_mask", "bool_mask_fp32"])
def test_fused_attention_training_matches_eager(case, cudnn):
    """Every kernel the executor picks: cuDNN (Hopper, half precision), flash (half, no mask) and
    memory-efficient (masks, float32) attention."""
    previous = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(cudnn)
    try:
        _check_attention(case)
    finally:
        torch.backends.cuda.enable_cudnn_sdp(previous)


def _check_attention(case):
    dtype = torch.float32 if case.endswith("fp32") else torch.bfloat16
    b, h, kv, L, e = 2, 8, 8, 128, 64
    if case == "gqa":
        kv = 2
    q, k, v = _leaves((b, h, L, e), (b, kv, L, e), (b, kv, L, e), dtype=dtype)
    mask = None
    if case == "float_mask":
        mask = torch.randn(1, 1, L, L, device="cuda", dtype=dtype)
    elif case.startswith("bool_mask"):
        mask = torch.rand(L, L, device="cuda") > 0.2
        mask.fill_diagonal_(True)

    def attention(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=case == "causal",
                                              enable_gqa=case == "gqa")

    weight = torch.randn(b, h, L, e, device="cuda")
    expected = _grads(attention, [q, k, v], weight)
    compiled = thunder.compile(attention)
    actual = _grads(compiled, [q, k, v], weight)
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=1e-4, rtol=1e-4)
    for a, e_ in zip(actual, expected):
        torch.testing.assert_close(a, e_, **tol)
    # grouped heads: cuDNN takes them as they are ("cudnn_gqa", when the probe says this torch can),
    # other kernels get K/V repeated by the "_gqa" symbols
    forward, backward = str(thunder.last_traces(compiled)[-1]), str(thunder.last_backward_traces(compiled)[-1])
    assert "sdpa.attention_forward(" in forward or "sdpa.attention_forward_gqa(" in forward
    assert "sdpa.attention_backward(" in backward or "sdpa.attention_backward_gqa(" in backward


def test_transformer_block_training_on_cuda_fuses_and_matches_eager():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True, device="cuda")
    x = torch.randn(2, 16, 64, device="cuda")
    compiled = thunder.compile(layer)
    compiled(x).sum().backward()
    actual = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    layer(x).sum().backward()
    for n, p in layer.named_parameters():
        torch.testing.assert_close(actual[n], p.grad, atol=1e-4, rtol=1e-4)
    assert "torchcompile." in str(thunder.last_traces(compiled)[-1])


def test_device_moves_train_like_eager():
    """A program that moves values between the GPU and the CPU: values and gradients as eager."""
    def f(x, w):
        h = (x @ w).relu()
        stats = h.cpu().double().sum(0)          # to the host and back
        return h * stats.to(h.device).float(), h.mean().to("cpu")

    x, w = _leaves((8, 16), (16, 4), dtype=torch.float32)
    compiled = thunder.compile(f)
    for fn in (f, compiled):
        out, mean = fn(x, w)
        assert mean.device.type == "cpu"
        grads = torch.autograd.grad(out.sum() + mean, (x, w))
        if fn is f:
            expected = (out.detach(), mean.detach(), *grads)
    torch.testing.assert_close((out.detach(), mean.detach(), *grads), expected)


def test_cuda_generator_state_inside_a_program():
    """Saving and restoring the CUDA generator's state (what ``torch.random.fork_rng`` and OpInfo's
    ``freeze_rng_state`` do) and seeding it happen when the program runs, as in eager."""
    def f(x):
        torch.cuda.manual_seed(7)
        state = torch.cuda.get_rng_state()
        a = torch.rand(4, device="cuda")
        torch.cuda.set_rng_state(state)
        b = torch.rand(4, device="cuda")          # the same draws again
        with torch.random.fork_rng(devices=[x.device]):
            c = torch.rand(4, device="cuda")
        return x + a, b, c

    x = torch.zeros(4, device="cuda")
    compiled = thunder.compile(f)
    for actual, expected in zip(compiled(x), f(x)):
        torch.testing.assert_close(actual, expected)
    a, b, _ = compiled(x)
    torch.testing.assert_close(a, b)


def test_attention_on_repeated_heads_runs_on_grouped_heads_like_eager():
    """litgpt repeats K/V heads itself for grouped-query attention: where cuDNN takes grouped
    heads, Thunder passes it the groups (no repeat copies); values and gradients as eager."""
    q, k, v = _leaves((2, 8, 128, 64), (2, 2, 128, 64), (2, 2, 128, 64), dtype=torch.bfloat16)

    def attention(q, k, v):
        return F.scaled_dot_product_attention(q, k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1),
                                              is_causal=True)

    weight = torch.randn(2, 8, 128, 64, device="cuda")
    expected = _grads(attention, [q, k, v], weight)
    compiled = thunder.compile(attention)
    actual = _grads(compiled, [q, k, v], weight)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=2e-2, rtol=2e-2)
    from thunder.executors.sdpa import _cudnn_available, _cudnn_takes_grouped_heads
    forward = str(thunder.last_traces(compiled)[-1])
    code = [line for line in forward.splitlines() if not line.strip().startswith("#")]
    if _cudnn_available(q.device) and _cudnn_takes_grouped_heads(q.device, q.dtype):
        assert "'cudnn_gqa'" in forward and not any("repeat_interleave" in line for line in code), forward
