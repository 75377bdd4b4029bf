"""Thunder bf16 vs Thunder + FP8 vs torch.compile on a litgpt Llama-3.2-1B-shaped model, one run.

1. Times a training step (zero_grad + forward + cross-entropy + backward) of each with CUDA events (warm-up,
   median), reporting first-call (compile) time and peak memory.
2. Trains Thunder bf16 and Thunder + FP8 from the same initialization for ``--steps`` AdamW steps
   on fresh batches of a learnable synthetic sequence (see ``batches``) and prints both loss curves.

    python plugins/thunder_fp8/bench_fp8.py                    # H200: 16 layers, 1 x 2048 tokens
    python plugins/thunder_fp8/bench_fp8.py --batch 4          # matmul-heavy: 4 x 2048 tokens
    python plugins/thunder_fp8/bench_fp8.py --recipe rowwise
    python plugins/thunder_fp8/bench_fp8.py --batch 4 --fp8-lm-head   # the output head in FP8 too
    python plugins/thunder_fp8/bench_fp8.py --tiny             # CPU smoke run with FP8 emulation
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import thunder
import thunder_fp8
import torch


def build(args, device, dtype):
    from litgpt import GPT, Config

    if args.tiny:
        shape = dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, intermediate_size=128, vocab=512, block=128)
    else:
        shape = dict(n_layer=args.layers, n_embd=2048, n_head=32, n_query_groups=8, intermediate_size=8192,
                     vocab=128256, block=4096)
    config = Config.from_name("Llama-3.2-1B", n_layer=shape["n_layer"], n_embd=shape["n_embd"],
                              n_head=shape["n_head"], n_query_groups=shape["n_query_groups"],
                              intermediate_size=shape["intermediate_size"], padded_vocab_size=shape["vocab"],
                              vocab_size=shape["vocab"], block_size=shape["block"])
    torch.manual_seed(0)
    with torch.device(device):
        return GPT(config).to(dtype=dtype), shape["vocab"]


class TrainingLoss(torch.nn.Module):
    """The model and its next-token cross-entropy as one module: each implementation compiles the
    whole forward of a training step (the float32 loss over 128k-way logits is a sizeable part of
    it), as a training script that compiles its loss function does."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        logits = self.model(ids[:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def prepare(name, model, ids, device, warmup):
    """The first call (compilation) and warm-up steps of one implementation; its peak memory:
    its parameters and the most its steps allocated on top (the other implementations' copies of
    the model are resident too and not counted; their gradients are freed between preparations)."""
    def step():  # a training loop's step, less the optimizer: gradients start unset (set_to_none)
        model.zero_grad(set_to_none=True)
        loss = model(ids)
        loss.backward()
        return loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
    sync(device)
    t0 = time.perf_counter()
    loss = step()
    sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    sync(device)
    peak = float("nan")
    if device.type == "cuda":
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        peak = (torch.cuda.max_memory_allocated() - resident + params) / 2**30
    model.zero_grad(set_to_none=True)
    return dict(name=name, step=step, first=first, peak=peak, loss=loss.item(), times=[])


def time_rounds(rows, device, iters, rounds=3):
    """Times every implementation's step in interleaved rounds (CUDA events): the GPU runs at its
    power limit, and its clock follows the load, so no implementation is charged for the heat of
    the one timed before it. Medians over all rounds."""
    per_round = max(1, iters // rounds)
    for _ in range(rounds):
        for row in rows:
            for _ in range(per_round):
                if device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    row["step"]()
                    end.record()
                    torch.cuda.synchronize()
                    row["times"].append(start.elapsed_time(end))
                else:
                    t = time.perf_counter()
                    row["step"]()
                    row["times"].append((time.perf_counter() - t) * 1e3)
    for row in rows:
        row["ms"] = statistics.median(row["times"])


def kernel_time(step):
    """Device time (ms) and number of the kernels (and copies, fills) one CUDA step launches; the
    median step time minus this is the time the GPU waits for the host."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.device_time for e in events) / 1e3, len(events)


def batches(vocab, seq, steps, device, batch=2):
    """A fresh batch per step from a noisy affine chain (next = 7 * token + noise mod 1024, noise in
    0..3): learnable, but with an entropy floor of ln 4 = 1.386, so neither run can memorize its way
    to zero and the two loss curves stay comparable to the end."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    span = min(vocab, 1024)
    for _ in range(steps):
        ids = torch.empty(batch, seq + 1, dtype=torch.long)
        ids[:, 0] = torch.randint(0, span, (batch,), generator=gen)
        noise = torch.randint(0, 4, (batch, seq), generator=gen)
        for t in range(seq):
            ids[:, t + 1] = (ids[:, t] * 7 + noise[:, t]) % span
        yield ids.to(device)


def train(model, data, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for ids in data:
        loss = model(ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    del opt
    return losses


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU with FP8 emulation (smoke run)")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1, help="sequences per timed step")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--recipe", default="tensorwise", choices=["tensorwise", "delayed", "rowwise"])
    parser.add_argument("--skip-torch-compile", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also report each step's kernel time and GPU idle time")
    parser.add_argument("--fp8-lm-head", action="store_true",
                        help="also time (and train) a run with the output head converted (FP8 skips it by default)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    emulate = not thunder_fp8.fp8_supported(device)
    if emulate and not args.tiny:
        print("no FP8-capable GPU: running with FP8 emulation (numbers are not FP8 speed)")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, vocab = build(args, device, dtype)
    base = TrainingLoss(model)
    seq = 64 if args.tiny else args.seq
    iters, warmup = (2, 1) if args.tiny else (args.iters, 3)
    ids = torch.randint(0, vocab, (args.batch, seq + 1), device=device)

    plugin = thunder_fp8.FP8(args.recipe, emulate=emulate)
    impls = [("thunder bf16", thunder.compile(copy.deepcopy(base))),
             ("thunder + fp8", thunder.compile(copy.deepcopy(base), plugins=[plugin]))]
    if args.fp8_lm_head:
        impls.append(("+ fp8 lm_head", thunder.compile(copy.deepcopy(base), plugins=[
            thunder_fp8.FP8(args.recipe, emulate=emulate, skip=())])))
    if not args.skip_torch_compile:
        impls.append(("torch.compile", torch.compile(base)))
    print(f"litgpt Llama-3.2-1B-like: {sum(p.numel() for p in base.parameters()) / 1e9:.2f}B params, "
          f"batch {args.batch} x {seq} tokens, {device}, recipe {args.recipe}, {len(plugin.converted)} FP8 linears")
    rows = [prepare(name, fn, ids, device, warmup) for name, fn in impls]
    time_rounds(rows, device, iters)
    for _, fn in impls:
        fn.zero_grad(set_to_none=True)
    ref = rows[0]["ms"]
    print(f"\n{'training step':<16}{'ms':>9}{'vs thunder bf16':>17}{'first call s':>14}{'peak GiB':>10}{'loss':>9}")
    for r in rows:
        print(f"{r['name']:<16}{r['ms']:>9.2f}{r['ms'] / ref:>17.3f}{r['first']:>14.1f}{r['peak']:>10.2f}"
              f"{r['loss']:>9.4f}")
    if device.type == "cuda":
        final = str(thunder.last_traces(impls[1][1])[-1])
        print(f"final FP8 trace: {final.count('fp8.scaled_mm(')} fp8.scaled_mm calls, "
              f"{final.count('torchcompile_')} torch.compile region calls")
        if args.profile:
            print(f"\n{'one step':<16}{'kernels ms':>11}{'launches':>10}{'GPU idle ms':>12}")
            for r in rows:
                kernels_ms, launches = kernel_time(r["step"])
                print(f"{r['name']:<16}{kernels_ms:>11.2f}{launches:>10}{r['ms'] - kernels_ms:>12.2f}")
            for _, fn in impls:
                fn.zero_grad(set_to_none=True)

    # a short training run of each Thunder implementation: the same initialization, the same batches
    steps = 10 if args.tiny else args.steps
    if steps == 0:
        return
    data = list(batches(vocab, seq, steps, device))
    lr = 1e-3 if args.tiny else 3e-4
    t0 = time.perf_counter()
    runs = [(name, train(fn, data, lr)) for name, fn in impls if name != "torch.compile"]
    print(f"\n{steps}-step AdamW run (lr {lr}, fresh batches of 2 x {seq} tokens of a noisy chain, loss floor "
          f"1.386), {time.perf_counter() - t0:.0f} s; rel diff: to thunder bf16")
    print(f"{'step':>6}" + "".join(f"{name:>16}{'rel diff':>10}" for name, _ in runs))
    bf16_losses = runs[0][1]
    for i in sorted({0, 1, 2, 5, 10, 20, 50, steps - 1} & set(range(steps))):
        print(f"{i:>6}" + "".join(f"{losses[i]:>16.4f}{abs(losses[i] - bf16_losses[i]) / bf16_losses[i]:>10.3%}"
                                  for _, losses in runs))
    tail = max(1, steps // 10)
    means = [(name, statistics.mean(losses[-tail:])) for name, losses in runs]
    print(f"mean of last {tail}: " + ", ".join(f"{name} {m:.4f} ({abs(m - means[0][1]) / means[0][1]:.2%} apart)"
                                               for name, m in means))


if __name__ == "__main__":
    main()
