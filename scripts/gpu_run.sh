#!/usr/bin/env bash
# Everything GPU, on the GPU machine (no network): install the distributions from this checkout
# (plus the wheels carried in .whl/, e.g. litgpt, into /tmp/site), then run
#   tests    the GPU-marked tests of every distribution
#   bench    the speed benchmarks of the core (eager vs torch.compile vs Thunder)
#   plugins  the plugins' benchmarks (reduce-overhead, fp8)
#   opinfo   the OpInfo suite on CUDA in float32 and bfloat16 (prints pass rates)
#   all      tests, bench and plugins (default)
# Each part's output also goes to $OUT/<part>.log when $OUT is set.
# The GPU machine has no network: fill .whl/ first (git-ignored) and carry it along:
#   pip download --no-deps -d .whl litgpt==0.5.13 jsonargparse==4.41.0 docstring_parser \
#       typeshed_client==2.14.0 expecttest==0.3.0
#   bash scripts/gpu_run.sh [tests|bench|plugins|all]
set -uo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
export PYTHONUNBUFFERED=1
editable=(-e thunder_core -e tests/sample_plugin)
for p in plugins/*/; do [ -f "$p/pyproject.toml" ] && editable+=(-e "$p"); done
python3 -m pip install -q --no-deps --no-build-isolation "${editable[@]}" || exit 1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
log() { if [ -n "${OUT:-}" ]; then tee -a "$OUT/$1.log"; else cat; fi; }
status=0
if [ "$what" = tests ] || [ "$what" = all ]; then
  paths=(tests); for p in plugins/*/tests; do [ -d "$p" ] && paths+=("$p"); done
  python3 -m pytest -q -m gpu -p no:cacheprovider "${paths[@]}" 2>&1 | log tests || status=1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 examples/bench_overhead.py 2>&1 | log bench || status=1
  python3 examples/bench_models.py 2>&1 | grep -v -i warn | log bench || status=1
fi
if [ "$what" = plugins ] || [ "$what" = all ]; then
  python3 plugins/thunder_cudagraphs/bench_cudagraphs.py 2>&1 | grep -v -i warn | log plugins || status=1
  python3 plugins/thunder_fp8/bench_fp8.py --batch 4 --profile --steps 30 2>&1 | grep -v -i warn | log plugins || status=1
fi
if [ "$what" = opinfo ]; then
  # pytest-xdist (on the GPU image) spreads the suite over the host's cores: about a minute
  xdist=(); python3 -c "import xdist" 2>/dev/null && xdist=(-n 12)
  THUNDER_OPINFO_DEVICE=cuda THUNDER_OPINFO_DTYPES=float32,bfloat16 python3 tests/test_opinfo.py "${xdist[@]}" \
    2>&1 | tail -40 | log opinfo || status=1
fi
exit $status
