"""Launch-bound inference: eager vs torch.compile (default and reduce-overhead) vs Thunder (plain and
with thunder-cudagraphs), on a Llama-3.2-1B-shaped Hugging Face LlamaForCausalLM (random weights,
bf16), in one run.

Cases:
  forward  one token, batch 1, no KV cache: the per-call time is nearly all launch overhead
  decode   a KV-cache decoding loop (HF StaticCache, one token per call), time per token

Per-call time is wall clock over many back-to-back calls followed by one synchronize, so CPU
overhead counts (CUDA events alone would hide it). Each implementation's logits are checked
against eager. An implementation that fails prints its error instead of a time.

    python plugins/thunder_cudagraphs/bench_cudagraphs.py              # H200: both cases
    python plugins/thunder_cudagraphs/bench_cudagraphs.py --only forward
    python plugins/thunder_cudagraphs/bench_cudagraphs.py --tiny       # CPU/GPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
import traceback

import thunder
import torch

LLAMA_3_2_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096,
                    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def build(shape, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, attn_implementation="sdpa")
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def implementations(model):
    return {
        "eager": lambda: model,
        "torch.compile": lambda: torch.compile(model),
        "torch.compile ro": lambda: torch.compile(model, mode="reduce-overhead"),
        "thunder": lambda: thunder.compile(model),
        "thunder ro": lambda: thunder.compile(model, plugins="reduce-overhead"),
    }


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_call_ms(fn, device, iters: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean wall time of ``iters`` back-to-back calls."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3 / iters)
    return statistics.median(times)


def forward_case(model, shape, device, iters):
    ids = torch.randint(0, shape["vocab_size"], (1, 1), device=device)
    with torch.no_grad():
        expected = model(ids, use_cache=False).logits.float()
    rows = []
    for name, make in implementations(model).items():
        try:
            fn = make()
            t0 = time.perf_counter()
            with torch.no_grad():
                for _ in range(5):  # compile, warm-up, capture
                    out = fn(ids, use_cache=False).logits
                sync(device)
                first = time.perf_counter() - t0
                diff = (out.float() - expected).abs().max().item()
                same = bool((out.float().argmax(-1) == expected.argmax(-1)).all())

                def call():
                    fn(ids, use_cache=False)

                ms = per_call_ms(call, device, iters)
            rows.append((name, ms, first, f"max |logits - eager| {diff:.3f}, argmax equal: {same}"))
        except Exception as e:  # noqa: BLE001 -- report and go on with the others
            traceback.print_exc(limit=2)
            rows.append((name, float("nan"), float("nan"), f"{type(e).__name__}: {str(e)[:80]}"))
        torch._dynamo.reset()
    report("forward: 1 token, batch 1, no KV cache", rows)
    return rows


def _static_cache(model, max_len, device, dtype):
    from transformers import StaticCache

    try:
        return StaticCache(config=model.config, max_cache_len=max_len)
    except TypeError:
        return StaticCache(config=model.config, max_batch_size=1, max_cache_len=max_len, device=device,
                           dtype=dtype)


def decode_case(model, shape, device, dtype, tokens, prompt=16):
    ids = torch.randint(0, shape["vocab_size"], (1, prompt), device=device)
    max_len = prompt + tokens + 8

    cache = _static_cache(model, max_len, device, dtype)

    def run(fn, count):
        """Prefill eagerly, then ``count`` greedy decoding steps through ``fn``; returns the tokens
        and the seconds the decoding steps took. The cache is reset and reused, as ``generate()``
        reuses its static cache from call to call."""
        cache.reset()
        with torch.no_grad():
            out = model(ids, past_key_values=cache, use_cache=True,
                        cache_position=torch.arange(prompt, device=device))
            token = out.logits[:, -1:].argmax(-1)
            produced = []
            sync(device)
            t0 = time.perf_counter()
            for i in range(count):
                pos = torch.tensor([prompt + i], device=device)
                out = fn(token, past_key_values=cache, use_cache=True, cache_position=pos,
                         position_ids=pos.unsqueeze(0))
                token = out.logits[:, -1:].argmax(-1)
                produced.append(token)
            sync(device)
            return torch.cat(produced, 1), time.perf_counter() - t0

    expected, _ = run(model, tokens)
    rows = []
    for name, make in implementations(model).items():
        try:
            fn = make()
            t0 = time.perf_counter()
            run(fn, 6)  # compile, warm-up, capture
            first = time.perf_counter() - t0
            got, seconds = run(fn, tokens)
            agree = (got == expected).float().mean().item()
            rows.append((name, seconds * 1e3 / tokens, first, f"tokens equal to eager: {agree:.0%}"))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(limit=2)
            rows.append((name, float("nan"), float("nan"), f"{type(e).__name__}: {str(e)[:80]}"))
        torch._dynamo.reset()
    report(f"decode: StaticCache, prompt {prompt}, {tokens} tokens, ms per token", rows)
    return rows


def report(title, rows):
    eager = rows[0][1]
    print(f"\n{title}")
    print(f"{'impl':<18}{'ms':>9}{'vs eager':>10}{'first s':>9}  note")
    for name, ms, first, note in rows:
        print(f"{name:<18}{ms:>9.3f}{ms / eager:>10.3f}{first:>9.1f}  {note}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (smoke run)")
    parser.add_argument("--only", default="forward,decode")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=64)
    opts = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = TINY if opts.tiny else LLAMA_3_2_1B
    torch.manual_seed(0)
    model = build(shape, device, dtype)
    cases = opts.only.split(",")
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    if "forward" in cases:
        forward_case(model, shape, device, 10 if opts.tiny else opts.iters)
    if "decode" in cases:
        decode_case(model, shape, device, dtype, 8 if opts.tiny else opts.tokens)


if __name__ == "__main__":
    main()
