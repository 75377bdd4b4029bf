"""Quick start: a few training steps of a litgpt Llama-style model, compiled, checked against eager.

Random weights from a config (no downloads). Thunder and eager start from the same weights and
data; their losses must agree at every step.

    python examples/litgpt_training.py                 # tiny config on CPU
    python examples/litgpt_training.py --device cuda   # Llama-3.2-1B-shaped, 4 layers, bf16
"""

import argparse
import copy

import thunder
import torch
from litgpt import GPT, Config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    opts = parser.parse_args()
    device = torch.device(opts.device)
    if device.type == "cuda":
        config, dtype, (batch, seq) = Config.from_name("Llama-3.2-1B", n_layer=4), torch.bfloat16, (1, 2048)
    else:
        config = Config(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, intermediate_size=128, vocab_size=256,
                        padded_vocab_size=256, block_size=128, mlp_class_name="LLaMAMLP", norm_class_name="RMSNorm",
                        bias=False, rotary_percentage=1.0, parallel_residual=False)
        dtype, (batch, seq) = torch.float32, (2, 64)
    torch.manual_seed(0)
    with torch.device(device):
        eager_model = GPT(config).to(dtype)
    thunder_model = thunder.compile(copy.deepcopy(eager_model))
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (eager_model, thunder_model)]
    for step in range(opts.steps):
        ids = torch.randint(0, config.vocab_size, (batch, seq + 1), device=device)
        losses = []
        for model, opt in zip((eager_model, thunder_model), optimizers):
            logits = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        print(f"step {step}: eager loss {losses[0]:.5f}  thunder loss {losses[1]:.5f}")
        tolerance = 1e-4 if dtype == torch.float32 else 2e-2
        assert abs(losses[0] - losses[1]) <= tolerance * max(1.0, abs(losses[0])), "losses differ"
    trace = str(thunder.last_traces(thunder_model)[-1])
    print("\nthe executed forward trace starts:\n" + "\n".join(trace.splitlines()[:12]))


if __name__ == "__main__":
    main()
