#!/usr/bin/env bash
# The study at RSNA size, timed stage by stage, on a CUDA machine in one command:
#   bash benchmarks/gpu_study.sh                     (outputs in a fresh folder; timings to $OUT)
#   bash benchmarks/gpu_study.sh --demo-n 300        (any run_pipeline.py flags pass through)
# Runs `scripts/run_pipeline.py --profile full --device cuda` with PNEUMOCAM_ROOT in a new
# folder, so no earlier study is touched, then copies metrics/pipeline_timing.json, the
# comparison and each run's evaluation to $OUT (or ./gpu-study-logs) -- also when a stage fails
# or the command is cut short, since the timing file is rewritten after every stage.
# Wheels from ./.whl/ are installed when pydicom or grad-cam is missing (benchmarks/device_wheels.sh
# makes them). GPU_STUDY_DEVICE=cpu runs the same on a CPU (a rehearsal at a small --demo-n).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mkdir -p "${OUT:-gpu-study-logs}" && cd "${OUT:-gpu-study-logs}" && pwd)"
if ! python3 -c "import pydicom, pytorch_grad_cam" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
export PNEUMOCAM_ROOT="${PNEUMOCAM_ROOT:-$(mktemp -d /tmp/pneumocam-study.XXXXXX)}"
echo "outputs in $PNEUMOCAM_ROOT; timings and metrics copied to $out"
collect() {  # what the study measured, whatever happened
    cp "$PNEUMOCAM_ROOT"/metrics/pipeline_timing.json "$out"/ 2>/dev/null || true
    cp "$PNEUMOCAM_ROOT"/metrics/comparison*.csv "$PNEUMOCAM_ROOT"/metrics/*_eval.json \
       "$PNEUMOCAM_ROOT"/metrics/*_localization.json "$out"/ 2>/dev/null || true
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" || true
    fi
}
trap collect EXIT
python3 scripts/run_pipeline.py --profile full --device "${GPU_STUDY_DEVICE:-cuda}" "$@" 2>&1 | tee "$out/pipeline.txt"
