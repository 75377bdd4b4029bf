"""Quick start: Hugging Face ViT image classification inference, checked against eager. Random
weights from a small config (no downloads).

    python examples/vit_inference.py [--device cuda]
"""

import argparse

import thunder
import torch
from transformers import ViTConfig, ViTForImageClassification


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    device = torch.device(parser.parse_args().device)
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=128, num_labels=10)
    model = ViTForImageClassification(config).to(device).eval()
    compiled = thunder.compile(model)
    images = torch.randn(4, 3, 32, 32, device=device)
    with torch.no_grad():
        expected = model(pixel_values=images).logits
        actual = compiled(pixel_values=images).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    print(f"ViT logits {list(actual.shape)} match eager; predicted classes {actual.argmax(-1).tolist()}")


if __name__ == "__main__":
    main()
