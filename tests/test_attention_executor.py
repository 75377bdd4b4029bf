"""The attention executor on CPU: training through torch's fused CPU flash-attention kernel
(forward and backward) matches eager for every form of attention models use."""

import re

import pytest
import thunder
import torch
import torch.nn.functional as F


@pytest.mark.parametrize("fused", [False, True], ids=["alone", "in_region"])
@pytest.mark.parametrize("case", ["plain", "causal", "gqa", "float_mask", "bool_mask", "bf16", "strided_query"])
def test_fused_attention_training_matches_eager_on_cpu(case, fused):
    """``in_region``: the torch.compile fusion executor compiles the attention kernels inside its
    regions together with the surrounding ops (what happens on CUDA by default)."""
    torch.manual_seed(0)
    dtype = torch.bfloat16 if case == "bf16" else torch.float32
    b, h, kv, length, e = 2, 4, 2 if case == "gqa" else 4, 16, 8
    q, k, v = (torch.randn(b, heads, length, e, dtype=dtype, requires_grad=True) for heads in (h, kv, kv))
    mask = None
    if case == "float_mask":
        mask = torch.randn(1, 1, length, length)
    elif case == "bool_mask":
        mask = torch.rand(length, length) > 0.3
        mask.fill_diagonal_(True)

    def attention(q, k, v):
        if case == "strided_query":
            q = q.transpose(2, 3).contiguous().transpose(2, 3)  # last dim not contiguous
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=case == "causal",
                                             enable_gqa=case == "gqa")
        return out.transpose(1, 2).reshape(b, length, h * e) * 2  # the gradient arrives strided

    weight = torch.randn(b, length, h * e)
    compiled = thunder.compile(attention, executors=["torchcompile", "sdpa"] if fused else None)
    results = []
    for fn in (attention, compiled):
        out = fn(q, k, v)
        results.append([out.detach(), *torch.autograd.grad((out.float() * weight).sum(), (q, k, v))])
    tolerance = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-5)
    for actual, expected in zip(results[1], results[0]):
        torch.testing.assert_close(actual, expected, **tolerance)
    forward, backward = str(thunder.last_traces(compiled)[-1]), str(thunder.last_backward_traces(compiled)[-1])
    gqa = "_gqa" if case == "gqa" else ""  # calls that repeat key/value heads
    assert f"sdpa.attention_forward{gqa}('cpu_flash'" in forward
    assert f"sdpa.attention_backward{gqa}('cpu_flash'" in backward
    if fused:  # the attention calls sit inside the regions (printed as their comments), GQA ones between
        line = next(ln for ln in forward.splitlines() if f"sdpa.attention_forward{gqa}(" in ln)
        assert line.lstrip().startswith("#") != bool(gqa)
        assert "torchcompile.torchcompile_0(" in forward and "torchcompile.torchcompile_0(" in backward


# -- causal masks built by the program ---------------------------------------------------------------

def _attention_with_mask(make_mask):
    def attention(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=make_mask(q.shape[-2], k.shape[-2]))
    return attention


def _hf_style_mask(L, S):
    """How Hugging Face's sdpa_mask builds it: kv_idx <= q_idx over two ranges, batch-expanded."""
    q_idx = torch.arange(0, L)
    kv_idx = torch.arange(S)
    kv_idx += 0
    return (kv_idx.reshape(1, 1, 1, S) <= q_idx[None, None, :, None]).expand(2, 1, L, S)


@pytest.mark.parametrize("case", ["hf_style", "ge", "shifted", "stale_view", "non_square", "strict"])
def test_causal_mask_built_by_the_program(case):
    """A mask provably equal to the causal mask becomes ``is_causal=True``; anything else stays a mask."""
    def stale_view(L, S):
        kv = torch.arange(S)
        row = kv.view(1, S)
        kv += 1  # the view sees the change: the mask is no longer causal
        return row <= torch.arange(L)[:, None]

    makers = {
        "hf_style": _hf_style_mask,
        "ge": lambda L, S: torch.arange(L).unsqueeze(-1) >= torch.arange(S).unsqueeze(0),
        "shifted": lambda L, S: torch.arange(1, S + 1)[None, :] <= torch.arange(L)[:, None],
        "stale_view": stale_view,
        "non_square": lambda L, S: torch.arange(S)[None, :] <= torch.arange(L)[:, None],
        "strict": lambda L, S: torch.arange(S)[None, :] < torch.arange(L)[:, None] + 1,
    }
    attention = _attention_with_mask(makers[case])
    L, S = 8, 12 if case == "non_square" else 8
    q = torch.randn(2, 4, L, 16, requires_grad=True)
    k, v = (torch.randn(2, 4, S, 16, requires_grad=True) for _ in range(2))
    compiled = thunder.compile(attention)
    expected = torch.autograd.grad(attention(q, k, v).sum(), (q, k, v))
    actual = torch.autograd.grad(compiled(q, k, v).sum(), (q, k, v))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled(q, k, v), attention(q, k, v), atol=1e-5, rtol=1e-5)
    rewritten = any(t.stage == "causal masks given as is_causal" for t in thunder.last_traces(compiled))
    assert rewritten == (case in ("hf_style", "ge"))


# -- masks converted to biases once ----------------------------------------------------------------

@pytest.mark.parametrize("case", ["bool", "bool_expanded", "float_unaligned", "written_between", "learned"])
@pytest.mark.parametrize("fused", [False, True], ids=["alone", "in_region"])
def test_mask_shared_by_layers_is_converted_once(case, fused):
    """One mask for three attention calls (a model's layers), 5 keys (rows not aligned), a fully
    masked row: values and gradients as eager; the bias is computed once, before the first call,
    from the mask before its expand; a mask written between the calls is converted per call."""
    torch.manual_seed(0)
    b, h, length, e = 2, 4, 5, 8
    if case == "bool_expanded":
        base = torch.rand(1, 1, length, length) > 0.4
        base[..., 1, :] = False
    else:
        base = torch.rand(b, 1, length, length) > 0.4
        base[0, :, 1, :] = False  # a fully masked row
    base[..., 0, 0] = True
    if case in ("float_unaligned", "learned"):
        base = torch.randn(b, 1, length, length, requires_grad=case == "learned")
    x = torch.randn(b, h, length, e, requires_grad=True)
    w = torch.randn(3, e, e, requires_grad=True)

    def layers(x, w, mask):
        if case == "bool_expanded":
            mask = mask.expand(b, h, length, length)
        for i in range(3):
            x = F.scaled_dot_product_attention(x @ w[i], x, x, attn_mask=mask) + x
            if case == "written_between" and i == 0:
                mask[..., 2, :] = ~mask[..., 2, :]
        return x

    compiled = thunder.compile(layers, executors=["torchcompile", "sdpa"] if fused else None)
    wants = (x, w, base) if case == "learned" else (x, w)
    results = []
    for fn in (layers, compiled):
        mask = base.clone() if case == "written_between" else base
        out = fn(x, w, mask)
        results.append([out.detach(), *torch.autograd.grad(out.sum(), wants)])
    for actual, expected in zip(results[1], results[0]):
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4, equal_nan=True)
    shared = next((t for t in thunder.last_traces(compiled) if t.stage == "attention masks converted to biases once"),
                  None)
    if case in ("written_between", "learned"):
        assert shared is None
        return
    text = str(shared)
    assert text.count("masked_fill(") == (0 if case == "float_unaligned" else 1)
    calls = [ln for ln in text.splitlines() if "scaled_dot_product_attention(query=" in ln]
    assert len(calls) == 3 and len({re.search(r"attn_mask=(\w+)", ln).group(1) for ln in calls}) == 1
    assert text.count("pad(") == 1
    assert text.index("pad(") < text.index("scaled_dot_product_attention(query=")
    if case == "bool_expanded":
        line = next(ln for ln in text.splitlines() if "masked_fill(" in ln)
        assert line.rstrip().endswith("f32[1, 1, 5, 5]")  # converted before the expand


def _attention_on_repeated_heads(modify_in_place=False):
    def attention(q, k, v):
        keys, values = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # litgpt's GQA
        if modify_in_place:
            k.mul_(2.0)  # after the repeat: attention must see the copy made before this
        return F.scaled_dot_product_attention(q, keys, values, is_causal=True)

    return attention


@pytest.mark.parametrize("modify_in_place", [False, True], ids=["repeat", "repeat_then_write"])
def test_attention_on_repeated_key_value_heads_takes_the_groups(monkeypatch, modify_in_place):
    """Where a kernel takes grouped heads (cuDNN on CUDA; here the CPU kernel, which repeats them
    itself, stands in for it), the heads a program repeats for attention are passed as groups."""
    monkeypatch.setattr(thunder.compiled, "takes_grouped_heads", lambda call: True)
    torch.manual_seed(0)
    q = torch.randn(2, 4, 16, 8, requires_grad=True)
    k, v = (torch.randn(2, 2, 16, 8) for _ in range(2))
    weight = torch.randn(2, 4, 16, 8)
    results = []
    for fn in (_attention_on_repeated_heads(modify_in_place),
               thunder.compile(_attention_on_repeated_heads(modify_in_place))):
        ks, vs = (t.clone().requires_grad_() for t in (k, v))
        inputs = (q, ks.clone() if modify_in_place else ks, vs)
        out = fn(*inputs)
        grads = torch.autograd.grad((out * weight).sum(), (q, vs) if modify_in_place else (q, ks, vs))
        results.append([out.detach(), *grads])
    for a, e in zip(results[1], results[0]):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4)
    forward = str(thunder.last_traces(fn)[-1])
    grouped = not any("repeat_interleave" in line for line in forward.splitlines()
                      if not line.strip().startswith("#"))
    assert grouped != modify_in_place, forward
