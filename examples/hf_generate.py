"""Quick start: Hugging Face causal-LM ``generate()`` with a static KV cache, compiled, checked
against eager. ``compiled.generate`` is the model's own generate loop; each step calls the compiled
forward. Random weights from a small Llama config (no downloads).

    python examples/hf_generate.py [--device cuda]
"""

import argparse

import thunder
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=12)
    opts = parser.parse_args()
    device = torch.device(opts.device)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(config).to(device).eval()
    compiled = thunder.compile(model)
    prompt = torch.randint(0, config.vocab_size, (1, 8), device=device)
    options = dict(max_new_tokens=opts.tokens, do_sample=False, cache_implementation="static",
                   pad_token_id=0)
    expected = model.generate(prompt, **options)
    actual = compiled.generate(prompt, **options)
    assert torch.equal(actual, expected), f"tokens differ:\n{actual}\n{expected}"
    again = compiled.generate(prompt, **options)  # generate() resets and reuses its static cache: no new trace
    assert torch.equal(again, expected), "a second generate() differs"
    print(f"generated {opts.tokens} tokens with a static cache, equal to eager: {actual[0, 8:].tolist()}")
    print(f"compiled forward: {thunder.cache_misses(compiled)} traces, {thunder.cache_hits(compiled)} cache hits")


if __name__ == "__main__":
    main()
