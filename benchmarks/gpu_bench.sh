#!/usr/bin/env bash
# The GPU measurements reported in the README, in one command on a CUDA machine:
#   bash benchmarks/gpu_bench.sh            (logs go to $OUT, or ./gpu-bench-logs)
# Needs torch, torchvision, numpy, opencv, scikit-learn, matplotlib and tqdm; grad-cam and ttach
# are installed from ./.whl/*.whl when present and missing (pure-Python wheels: `pip wheel
# --no-deps grad-cam==1.5.7 ttach==0.0.3 -w .whl`). pydicom is not needed: every benchmark here
# runs on arrays.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-bench-logs}"
mkdir -p "$out"
if ! python3 -c "import pytorch_grad_cam" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 benchmarks/bench_train.py --device cuda 2>&1 | tee "$out/bench_train.txt"
python3 benchmarks/bench_train.py --device cuda --compile --skip-baseline 2>&1 | tee "$out/bench_train_compile.txt"
python3 benchmarks/bench_cam.py --device cuda --json "$out/bench_cam.json" 2>&1 | tee "$out/bench_cam.txt"
python3 benchmarks/bench_eval.py --device cuda --json "$out/bench_eval.json" 2>&1 | tee "$out/bench_eval.txt"
