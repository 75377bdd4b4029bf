"""Eager vs torch.compile vs Thunder on Llama-3.2-1B-shaped models, in one run.

Models are built from configs with random weights (no downloads): litgpt's GPT with the
Llama-3.2-1B config (when litgpt is installed) and Hugging Face's LlamaForCausalLM with the same
shape. For each, a training step (zero_grad + forward + cross-entropy + backward) and, for HF, inference
forward; each implementation is timed with CUDA events (warm-up, then interleaved rounds; median),
checked against eager, and reported with its first-call compile time and peak memory.

    python examples/bench_models.py                 # the H200 configuration (bf16, 16 layers)
    python examples/bench_models.py --tiny          # CPU smoke run: tiny shapes, correctness only
"""

from __future__ import annotations

import argparse
import statistics
import time

import thunder
import torch

LLAMA_3_2_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096,
                    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def hf_llama(shape: dict, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, attn_implementation="sdpa")
    return LlamaForCausalLM(config).to(device=device, dtype=dtype)


def litgpt_llama(shape: dict, device, dtype):
    from litgpt import GPT, Config

    config = Config.from_name("Llama-3.2-1B", n_layer=shape["num_hidden_layers"], n_embd=shape["hidden_size"],
                              n_head=shape["num_attention_heads"], n_query_groups=shape["num_key_value_heads"],
                              intermediate_size=shape["intermediate_size"], padded_vocab_size=shape["vocab_size"],
                              vocab_size=shape["vocab_size"], block_size=shape["max_position_embeddings"])
    with torch.device(device):
        return GPT(config).to(dtype=dtype)


class Timer:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, iters: int) -> list[float]:
        times = []
        for _ in range(iters):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return times


def _print_profile(title, step, rows=40):
    """Where the time of one step goes: the kernels with the most device time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    print(f"\n-- profile: {title}")
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=rows, max_name_column_width=70))


def _write_kernels(directory, title, step):
    """Every CUDA kernel of one step (total time, launches, time per launch), most time first: diff
    two implementations' files to see where one spends more."""
    import pathlib

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    rows = sorted(((e.device_time_total, e.count, e.key) for e in prof.key_averages()
                   if e.device_time_total > 0 and not e.key.startswith(("aten::", "autograd::", "cuda"))),
                  reverse=True)
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    lines = [f"total {sum(r[0] for r in rows):.0f} us, {sum(r[1] for r in rows)} launches"]
    lines += [f"{t:10.1f} {n:5d} {t / n:8.1f}  {k[:160]}" for t, n, k in rows]
    (path / ("".join(c if c.isalnum() else "_" for c in title) + ".txt")).write_text("\n".join(lines) + "\n")


def _write_traces(directory, name, fn):
    """The executed forward (and backward) trace of ``fn``, to read what ran."""
    import pathlib

    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() else "_" for c in name)
    (path / f"{stem}.forward.py").write_text(str(thunder.last_traces(fn)[-1]))
    backward = thunder.last_backward_traces(fn)
    if backward:
        (path / f"{stem}.backward.py").write_text(str(backward[-1]))


def run_case(name, model, make_step, device, iters, warmup, tolerance, profile=False, traces_dir=None, rounds=5,
             kernels_dir=None):
    """Times the implementations in interleaved rounds (eager, torch.compile, Thunder, eager, ...)
    so that a GPU's clock drifting over the run (it heats up) is shared by all of them rather than
    charged to whichever runs last."""
    results, first, peak, steps = {}, {}, {}, {}
    implementations = {"eager": model, "torch.compile": torch.compile(model), "thunder": thunder.compile(model)}
    timer = Timer(device)
    for impl, fn in implementations.items():
        steps[impl] = step = make_step(fn)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        first[impl] = time.perf_counter() - t0
        results[impl] = out.detach().float()
        for _ in range(warmup):
            step()
        peak[impl] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        if traces_dir and impl == "thunder":
            _write_traces(traces_dir, name, fn)
        model.zero_grad(set_to_none=True)
    times = {impl: [] for impl in implementations}
    for _ in range(rounds):
        for impl, step in steps.items():
            times[impl] += timer(step, max(1, iters // rounds))
    model.zero_grad(set_to_none=True)
    for impl, step in steps.items():
        if profile:
            _print_profile(f"{name}: {impl}", step)
        if kernels_dir:
            _write_kernels(kernels_dir, f"{name} {impl}", step)
    model.zero_grad(set_to_none=True)
    rows = [(impl, statistics.median(times[impl]), first[impl], peak[impl]) for impl in implementations]
    for impl in ("torch.compile", "thunder"):
        # bf16 outputs of differently fused programs differ elementwise; compare relative to scale
        error = (results[impl] - results["eager"]).abs().max() / results["eager"].abs().max().clamp_min(1e-6)
        if error > tolerance:
            raise AssertionError(f"{name}: {impl} differs from eager by {error:.3g} (relative to max |eager|)")
    eager_ms = rows[0][1]
    compile_ms = rows[1][1]
    print(f"\n{name}")
    print(f"{'impl':<15}{'ms':>10}{'vs eager':>10}{'vs t.compile':>14}{'first call s':>14}{'peak GiB':>10}")
    for impl, ms, first_s, peak_gib in rows:
        print(f"{impl:<15}{ms:>10.2f}{ms / eager_ms:>10.3f}{ms / compile_ms:>14.3f}{first_s:>14.1f}{peak_gib:>10.2f}")
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (CI smoke: correctness only)")
    parser.add_argument("--iters", type=int, default=30, help="timed steps per implementation")
    parser.add_argument("--only", default="", help="comma-separated case names to run")
    parser.add_argument("--profile", action="store_true", help="print each implementation's top CUDA kernels")
    parser.add_argument("--traces", default=None, help="directory to write Thunder's executed traces to")
    parser.add_argument("--kernels", default=None, help="directory to write each implementation's CUDA kernels to")
    opts = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not opts.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = TINY if opts.tiny else LLAMA_3_2_1B
    batch_seq_train = (1, 64) if opts.tiny else (1, 2048)
    batch_seq_infer = (2, 32) if opts.tiny else (8, 512)
    iters, warmup = (3, 1) if opts.tiny else (opts.iters, 3)
    tolerance = 1e-3 if dtype == torch.float32 else 5e-2
    torch.manual_seed(0)

    def training_step(get_logits, b, t):
        ids = torch.randint(0, shape["vocab_size"], (b, t), device=device)

        def make(fn):
            def step():  # a training loop's step, less the optimizer: gradients start unset
                fn.zero_grad(set_to_none=True)
                logits = get_logits(fn, ids)
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids.flatten())
                loss.backward()
                return loss
            return step
        return make

    def inference_step(get_logits, b, t):
        ids = torch.randint(0, shape["vocab_size"], (b, t), device=device)

        def make(fn):
            def step():
                with torch.no_grad():
                    return get_logits(fn, ids)
            return step
        return make

    cases = []
    try:
        model = litgpt_llama(shape, device, dtype)
        cases.append(("litgpt Llama-3.2-1B training step", model,
                      training_step(lambda fn, ids: fn(ids), *batch_seq_train)))
    except ImportError:
        print("litgpt is not installed: skipping the litgpt model")
    hf = hf_llama(shape, device, dtype)
    cases.append(("HF LlamaForCausalLM training step", hf,
                  training_step(lambda fn, ids: fn(input_ids=ids).logits, *batch_seq_train)))
    cases.append(("HF LlamaForCausalLM inference forward", hf,
                  inference_step(lambda fn, ids: fn(input_ids=ids).logits, *batch_seq_infer)))
    only = {s.strip() for s in opts.only.split(",") if s.strip()}
    for name, model, make_step in cases:
        if only and not any(o in name for o in only):
            continue
        run_case(name, model, make_step, device, iters, warmup, tolerance, opts.profile and device.type == "cuda",
                 opts.traces, kernels_dir=opts.kernels if device.type == "cuda" else None)


if __name__ == "__main__":
    main()
