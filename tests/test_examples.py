"""The quick starts and benchmarks in examples/ run offline on CPU and check themselves against
eager (each exits non-zero on a mismatch)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def _run(script, *args, timeout=600):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("script, expected", [
    ("demo.py", "thunder"),
    ("bert_inference.py", "match eager"),
    ("vit_inference.py", "match eager"),
    ("hf_generate.py", "equal to eager"),
    ("litgpt_training.py", "thunder loss"),
])
def test_quick_start(script, expected):
    pytest.importorskip("transformers")
    if script.startswith("litgpt"):
        pytest.importorskip("litgpt")
    assert expected in _run(script)


def test_model_benchmark_smoke_on_cpu():
    """The speed benchmark's CPU mode: tiny shapes, eager vs torch.compile vs Thunder, outputs
    checked against eager (no timing assertions)."""
    out = _run("bench_models.py", "--tiny", "--only", "HF LlamaForCausalLM")
    assert "HF LlamaForCausalLM training step" in out and "thunder" in out
