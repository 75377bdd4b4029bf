"""The seed hello world, unchanged, plus its gradients."""

import thunder
import torch
from torch import nn


def test_seed_mlp_matches_eager_and_prints_a_python_program():
    model = nn.Sequential(nn.Linear(2048, 4096), nn.ReLU(), nn.Linear(4096, 64))
    x = torch.randn(64, 2048)
    tm = thunder.compile(model)
    y = tm(x)
    torch.testing.assert_close(y, model(x))

    final = thunder.last_traces(tm)[-1]
    source = str(final)
    compile(source, "<final trace>", "exec")  # valid Python
    assert "torch.nn.functional.linear" in source
    assert "torch.nn.functional.relu" in source
    assert "f32[64, 4096]" in source  # metadata comments


def test_seed_mlp_gradients_match_eager():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    reference = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    reference.load_state_dict(model.state_dict())
    x = torch.randn(16, 32)
    tm = thunder.compile(model)
    tm(x).pow(2).sum().backward()
    reference(x).pow(2).sum().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_compiled_module_shares_state_with_the_original():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    tm = thunder.compile(model)
    assert isinstance(tm, nn.Sequential)
    assert list(tm.state_dict()) == list(model.state_dict())
    assert all(p is q for p, q in zip(tm.parameters(), model.parameters()))
    assert tm[0] is model[0]
    tm.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(tm(x), model.eval()(x))
    with torch.no_grad():
        model[0].weight.mul_(2)  # in-place update of the shared parameter is seen
    torch.testing.assert_close(tm(x), model(x))
