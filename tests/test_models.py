"""Whole models from other libraries and hand-written CNNs: compiled forward (and gradients) match
eager."""

import copy

import pytest
import thunder
import torch
from torch import nn


def test_litgpt_gpt_forward_matches_eager_and_retraces_for_new_length():
    litgpt = pytest.importorskip("litgpt")
    torch.manual_seed(0)
    config = litgpt.Config(block_size=64, vocab_size=128, padded_vocab_size=128, n_layer=2, n_head=4, n_embd=64,
                           n_query_groups=2, rotary_percentage=1.0, parallel_residual=False, bias=False,
                           norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=128)
    model = litgpt.GPT(config).eval()
    tm = thunder.compile(model)
    for length in (16, 16, 9):
        idx = torch.randint(0, 128, (2, length))
        with torch.no_grad():
            torch.testing.assert_close(tm(idx), model(idx), atol=1e-4, rtol=1e-4)
    assert thunder.cache_hits(tm) >= 1


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out (torchvision is not a dependency)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def _resnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2), BasicBlock(8, 8), BasicBlock(8, 16, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_resnet_blocks_eval_and_training_with_batchnorm_state():
    eager = _resnet()
    model = copy.deepcopy(eager)
    tm = thunder.compile(model)
    x = torch.randn(4, 3, 16, 16)
    # training: batch statistics, running stats updated in place, gradients
    tm(x).square().mean().backward()
    eager(x).square().mean().backward()
    for (name, a), b in zip(model.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4)
    # eval: running statistics
    model.eval()
    eager.eval()
    with torch.no_grad():
        torch.testing.assert_close(tm(x), eager(x), atol=1e-5, rtol=1e-4)
