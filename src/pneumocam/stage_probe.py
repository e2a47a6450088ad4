"""Run a script as ``__main__`` and record its peak GPU memory when it exits.

    python -m pneumocam.stage_probe REPORT.json scripts/train_original.py --epochs 1 ...

The pipeline starts its training and interpretation stages this way
(:meth:`pneumocam.stage_timing.PipelineTimer.run`): the script runs unchanged (same argv, same
exit status), and at exit ``REPORT.json`` receives ``{"gpu_peak_bytes": n}``, the script's
``torch.cuda.max_memory_allocated()``, or ``null`` when it never initialised CUDA (no CUDA
context is created just to ask), and ``{"gpu_name": ...}``, the device it used.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def gpu_peak_bytes() -> int | None:
    """``torch.cuda.max_memory_allocated()`` of this process, None when CUDA was never used."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def gpu_used_name() -> str | None:
    """The CUDA device's name when this process used CUDA, else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return str(torch.cuda.get_device_name(torch.cuda.current_device()))


def main() -> None:
    """Run ``sys.argv[2]`` with the arguments after it; write the report to ``sys.argv[1]``."""
    if len(sys.argv) < 3:
        sys.exit("usage: python -m pneumocam.stage_probe REPORT.json SCRIPT [ARGS ...]")
    report, script = Path(sys.argv[1]), sys.argv[2]
    # The script sees the argv and sys.path[0] it would see when run directly.
    sys.argv = sys.argv[2:]
    sys.path[0] = str(Path(script).resolve().parent)
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        try:
            report.write_text(json.dumps({"gpu_peak_bytes": gpu_peak_bytes(),
                                          "gpu_name": gpu_used_name()}))
        except OSError:
            pass  # the measurement is optional; the stage's own outcome decides


if __name__ == "__main__":
    main()
