"""Per-call host overhead on a cache hit, CPU, tiny tensors: Thunder vs eager vs torch.compile.

Two programs: a small elementwise function and a small Linear/GELU/LayerNorm module. Each is
timed in one run for eager, torch.compile and Thunder, taking turns (median over many rounds of a
loop of calls each); the table gives microseconds per call and the ratios to eager and
torch.compile.

    python examples/bench_overhead.py [--no-torch-compile]
"""

import argparse
import statistics
import time

import thunder
import torch
from torch import nn


def elementwise(x, y):
    return (x * y + 1).relu() - y


class SmallModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)

    def forward(self, x):
        return self.norm(torch.nn.functional.gelu(self.fc(x)))


def per_call_us(implementations: dict, args, loops: int = 200, repeats: int = 31) -> dict:
    """Median microseconds per call of each implementation. The implementations take turns, one
    loop of calls each per round, so a slow phase of the machine affects all of them alike."""
    for fn in implementations.values():
        for _ in range(20):
            fn(*args)
    samples = {name: [] for name in implementations}
    for _ in range(repeats):
        for name, fn in implementations.items():
            start = time.perf_counter()
            for _ in range(loops):
                fn(*args)
            samples[name].append((time.perf_counter() - start) / loops * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (slow first call)")
    opts = parser.parse_args()
    torch.manual_seed(0)
    programs = {
        "elementwise fn": (elementwise, (torch.randn(8), torch.randn(8))),
        "Linear/GELU/LayerNorm": (SmallModule(), (torch.randn(4, 16),)),
    }
    print(f"{'program':<24}{'eager us':>10}{'t.compile us':>14}{'thunder us':>12}{'th/eager':>10}{'th/t.compile':>14}")
    for name, (fn, args) in programs.items():
        compiled = thunder.compile(fn)
        torch.testing.assert_close(compiled(*args), fn(*args))
        implementations = {"eager": fn, "thunder": compiled}
        if not opts.no_torch_compile:
            implementations["torch.compile"] = torch.compile(fn)
            torch.testing.assert_close(implementations["torch.compile"](*args), fn(*args))
        times = per_call_us(implementations, args)
        eager, ours, tc = times["eager"], times["thunder"], times.get("torch.compile")
        tc_text, ratio_tc = ("-", "-") if tc is None else (f"{tc:.1f}", f"{ours / tc:.2f}")
        print(f"{name:<24}{eager:>10.1f}{tc_text:>14}{ours:>12.1f}{ours / eager:>10.2f}{ratio_tc:>14}")
        assert thunder.cache_misses(compiled) == 1


if __name__ == "__main__":
    main()
