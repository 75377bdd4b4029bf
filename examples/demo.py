"""Thunder's quick start on CPU: the seed MLP and a small transformer block.

Compiles each model, checks outputs and gradients against eager PyTorch, prints the final trace of
the MLP (the Python program that actually ran) and a timing table against eager.

    python examples/demo.py
"""

import statistics
import time

import thunder
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """A pre-norm transformer block written with plain torch."""

    def __init__(self, dim: int = 256, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.norm2(x))))


def median_ms(fn, *args, iters: int = 30) -> float:
    for _ in range(3):
        fn(*args)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def check(name, model, x):
    tm = thunder.compile(model)
    expected, actual = model(x), tm(x)
    torch.testing.assert_close(actual, expected)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    tm(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        # Thunder's backward sums in a different order than eager's: float32 rounding differs
        torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=1e-4)
    print(f"{name}: outputs and gradients match eager")
    return tm


def main():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2048, 4096), nn.ReLU(), nn.Linear(4096, 64))
    x_mlp = torch.randn(64, 2048)
    block = Block()
    x_block = torch.randn(4, 64, 256)

    tm_mlp = check("seed MLP", mlp, x_mlp)
    tm_block = check("transformer block", block, x_block)

    print("\nThe final trace of the MLP (what ran):\n")
    print(thunder.last_traces(tm_mlp)[-1])

    print(f"{'model':<20}{'eager ms':>10}{'thunder ms':>12}{'thunder/eager':>15}")
    with torch.no_grad():
        for name, model, tm, x in (("seed MLP", mlp, tm_mlp, x_mlp), ("transformer block", block, tm_block, x_block)):
            eager, compiled = median_ms(model, x), median_ms(tm, x)
            print(f"{name:<20}{eager:>10.3f}{compiled:>12.3f}{compiled / eager:>15.2f}")


if __name__ == "__main__":
    main()
