"""Peak memory of one training step (forward + backward) of a litgpt model: eager vs Thunder.

    python examples/bench_memory.py                 # CPU: a small Llama-like config
    python examples/bench_memory.py --device cuda   # GPU: a Llama-3.2-1B-like config in bf16

Each mode runs in the same process on identical weights and batch; the reported number is the peak
of memory allocated *during* the step above what was allocated before it (parameters, the batch
and the optimizer state are already there), and the losses are checked to agree.

How memory is measured:
- CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the step (the
  caching allocator's own counters).
- CPU: torch has no allocator peak counter on CPU, so the step runs under ``torch.profiler`` with
  ``profile_memory=True``, which records every allocation and free of the CPU allocator with its
  size and time; the running sum of those events, in time order, gives the live bytes and its
  maximum the peak. (The Python objects of the model are not in it: only tensor memory, which is
  what the comparison is about.)

Modes: eager; Thunder; Thunder with ``checkpoint=Block`` (activation checkpointing of each
transformer block); and eager with torch.utils.checkpoint around each block for reference.
"""

from __future__ import annotations

import argparse
import copy
import time

import thunder
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from litgpt import GPT, Config
from litgpt.model import Block
from torch.profiler import ProfilerActivity, profile


def cpu_config():
    return Config(n_layer=4, n_embd=256, n_head=8, n_query_groups=4, block_size=512, vocab_size=2048,
                  padded_vocab_size=2048, mlp_class_name="LLaMAMLP", norm_class_name="RMSNorm",
                  intermediate_size=704, bias=False, rotary_percentage=1.0, parallel_residual=False)


def gpu_config():
    # Llama-3.2-1B's shapes (16 layers, 2048 wide, GQA 32/8, 8192 MLP, 128k vocab)
    return Config.from_name("Llama-3.2-1B")


def loss_fn(model, idx, targets):
    logits = model(idx)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def peak_cpu(step):
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak, result


def peak_cuda(step):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before, result


class _EagerCheckpointed(torch.nn.Module):
    """Eager reference: each block's forward under torch.utils.checkpoint."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, *args, **kwargs):
        return torch.utils.checkpoint.checkpoint(self.block, *args, use_reentrant=False, **kwargs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    config = gpu_config() if cuda else cpu_config()
    batch = args.batch or (1 if cuda else 4)
    seq = args.seq or (2048 if cuda else 256)
    dtype = torch.bfloat16 if cuda else torch.float32
    measure = peak_cuda if cuda else peak_cpu

    torch.manual_seed(0)
    with torch.device(device):
        base = GPT(config).to(dtype)
    idx = torch.randint(0, config.padded_vocab_size, (batch, seq), device=device)
    targets = torch.randint(0, config.padded_vocab_size, (batch, seq), device=device)
    params = sum(p.numel() for p in base.parameters())
    print(f"litgpt {config.name or 'custom'}: {config.n_layer} layers, n_embd {config.n_embd}, "
          f"{params / 1e6:.1f}M parameters, {dtype}, batch {batch} x {seq} on {device}")

    def eager_ckpt_model():
        m = copy.deepcopy(base)
        m.transformer.h = torch.nn.ModuleList(_EagerCheckpointed(b) for b in m.transformer.h)
        return m

    modes = {
        "eager": lambda: copy.deepcopy(base),
        "eager + torch.utils.checkpoint": eager_ckpt_model,
        "thunder": lambda: thunder.compile(copy.deepcopy(base)),
        "thunder checkpoint=Block": lambda: thunder.compile(copy.deepcopy(base), checkpoint=Block),
    }
    results = {}
    for name, make in modes.items():
        model = make()

        def step(model=model):
            loss = loss_fn(model, idx, targets)
            loss.backward()
            return loss.detach()

        step()  # warm-up: compiles, fills caches, allocates .grad
        for p in model.parameters():
            p.grad = None
        start = time.perf_counter()
        peak, loss = measure(step)
        seconds = time.perf_counter() - start
        results[name] = (peak, loss.item())
        print(f"{name:32s} peak {peak / 2**20:9.1f} MiB   loss {loss.item():.5f}   step {seconds * 1e3:8.1f} ms"
              f"{'  (under the profiler)' if not cuda else ''}")
        del model
        if cuda:
            torch.cuda.empty_cache()

    eager_peak, eager_loss = results["eager"]
    for name, (peak, loss) in results.items():
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
        assert abs(loss - eager_loss) <= tol * max(1.0, abs(eager_loss)), (name, loss, eager_loss)
        print(f"{name:32s} {peak / eager_peak:6.2f} x eager's peak")


if __name__ == "__main__":
    main()
