#!/usr/bin/env bash
# The wheels a lent GPU machine lacks for `gpu_bench.sh` and `gpu_study.sh`, into ./.whl/.
#   bash benchmarks/device_wheels.sh          (run here, with network access to PyPI)
# Those machines' Python (3.12) has torch, torchvision, numpy, pandas, scikit-learn, scipy,
# matplotlib, opencv, pillow and tqdm, and no network. What they lack is pure Python: pydicom
# (the demo DICOMs are JPEG Baseline, which Pillow decodes), grad-cam and ttach (interpretation's
# library methods). Versions are those of requirements_dev.txt. Keep .whl/ out of git
# (`echo /.whl/ >> .git/info/exclude`) and carry it to the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
pinned() {  # the version requirements_dev.txt pins for a package
    local v
    v=$(grep -i "^$1==" requirements_dev.txt | cut -d= -f3)
    [ -n "$v" ] || { echo "requirements_dev.txt pins no version of $1" >&2; exit 1; }
    echo "$v"
}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "pydicom==$(pinned pydicom)"
python3 -m pip wheel -q --no-deps -w .whl "grad-cam==$(pinned grad-cam)" "ttach==$(pinned ttach)"
ls -l .whl
