#!/usr/bin/env bash
# Everything GPU in one call, on the GPU machine (no network): install the distributions from this
# checkout, run the GPU-marked tests of every distribution, then the benchmarks.
#   bash scripts/gpu_run.sh [tests|bench|all]   (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
export PYTHONUNBUFFERED=1
editable=(-e thunder_core -e tests/sample_plugin)
for p in plugins/*/; do [ -f "$p/pyproject.toml" ] && editable+=(-e "$p"); done
python3 -m pip install -q --no-deps --no-build-isolation "${editable[@]}" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
status=0
if [ "$what" = tests ] || [ "$what" = all ]; then
  paths=(tests); for p in plugins/*/tests; do [ -d "$p" ] && paths+=("$p"); done
  python3 -m pytest -q -x -m gpu "${paths[@]}" || status=1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 examples/bench_overhead.py || status=1
  python3 examples/bench_models.py || status=1
fi
exit $status
