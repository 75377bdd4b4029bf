"""Quick start: Hugging Face BERT inference (masked-LM logits with a padding mask), checked
against eager. Random weights from a small config (no downloads).

    python examples/bert_inference.py [--device cuda]
"""

import argparse

import thunder
import torch
from transformers import BertConfig, BertForMaskedLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    device = torch.device(parser.parse_args().device)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=128)
    model = BertForMaskedLM(config).to(device).eval()
    compiled = thunder.compile(model)
    ids = torch.randint(0, config.vocab_size, (2, 24), device=device)
    mask = torch.ones_like(ids)
    mask[1, 16:] = 0  # the second sequence is padded
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        actual = compiled(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    print(f"BERT masked-LM logits {list(actual.shape)} match eager "
          f"(max abs difference {(actual - expected).abs().max().item():.2e})")


if __name__ == "__main__":
    main()
