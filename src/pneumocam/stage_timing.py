"""Wall time and peak memory of each pipeline stage, written to ``metrics/pipeline_timing.json``.

Most stages run as their own script in a subprocess (:mod:`pneumocam.pipeline`), so each is
measured on its own:

- wall time: ``time.perf_counter`` around the stage;
- peak host memory of a subprocess stage: ``ru_maxrss`` from ``os.wait4`` on that child, i.e.
  the largest resident set of the stage process or of any child it waited for (DataLoader or
  pool workers), in MiB. For a stage run inside the pipeline process (preprocessing), the
  high-water mark of the pipeline process and its finished children so far, which for the first
  stage is that stage's own peak; ``host_memory_scope`` says which one a record holds;
- peak GPU memory: the stage process runs its script through :mod:`pneumocam.stage_probe`,
  which reads ``torch.cuda.max_memory_allocated`` at exit (None when the stage never used CUDA).

The JSON is rewritten after every stage (atomically), so a stage that fails leaves the timing of
the stages before it, and the failed one marked ``failed``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import paths
from .errors import PneumocamError
from .provenance import cpu_model, provenance, write_json_atomic

TIMING_NAME = "pipeline_timing.json"
_MIB = 1024 * 1024
# ru_maxrss is in KiB on Linux, bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclass
class StageRecord:
    """One stage of one pipeline call.

    Attributes:
        stage: its name as printed (``train original``, ``interpret balanced-s1`` ...).
        status: ``ran`` | ``skipped`` (finished earlier with the same settings) | ``failed``.
        wall_s: seconds of wall time (0 when skipped).
        peak_host_mib: peak resident memory in MiB (None when skipped).
        host_memory_scope: ``stage`` (this stage's process and its workers) or
            ``pipeline so far`` (the pipeline process's high-water mark; in-process stages).
        peak_gpu_mib: ``torch.cuda.max_memory_allocated`` in MiB, None without CUDA.
        note: why it was skipped, or the exit status of a failed stage.
    """

    stage: str
    status: str
    wall_s: float = 0.0
    peak_host_mib: float | None = None
    host_memory_scope: str | None = None
    peak_gpu_mib: float | None = None
    note: str | None = None


def cpu_name() -> str:
    """The CPU's model name (:func:`pneumocam.provenance.cpu_model`), or ``"unknown"``."""
    return cpu_model() or "unknown"


def gpu_name() -> str | None:
    """The first GPU's name from ``nvidia-smi``, or None without one. The pipeline process asks
    the driver rather than torch, so it never holds a CUDA context of its own; a stage that used
    CUDA reports the name torch saw (:mod:`pneumocam.stage_probe`)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    names = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return names[0].strip() if names else None


def _self_high_water_mib() -> float:
    peaks = [resource.getrusage(who).ru_maxrss for who in
             (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return max(peaks) * _RSS_UNIT / _MIB


class PipelineTimer:
    """Records every stage of one pipeline call and keeps ``metrics/pipeline_timing.json`` current.

    Args:
        settings: the pipeline's settings (JSON-able), saved with the timings.
        excluded: stages left out of ``total_excluding_s`` (the demo generation, reported on
            its own).
    """

    def __init__(self, settings: dict[str, Any], excluded: Sequence[str] = ("make demo",)):
        self.settings = settings
        self.excluded = tuple(excluded)
        self.records: list[StageRecord] = []
        self._start = time.perf_counter()
        self._machine = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "gpu": gpu_name()}

    @property
    def path(self) -> Path:
        return paths.metrics_dir() / TIMING_NAME

    def _add(self, record: StageRecord) -> StageRecord:
        self.records.append(record)
        self.write()
        return record

    def skipped(self, stage: str, note: str) -> StageRecord:
        """Record a stage that was not run (finished earlier with the same settings and data)."""
        return self._add(StageRecord(stage, "skipped", note=note))

    @contextmanager
    def in_process(self, stage: str) -> Iterator[None]:
        """Time a stage that runs inside the pipeline process (``with timer.in_process(...)``)."""
        start = time.perf_counter()
        status = "failed"
        try:
            yield
            status = "ran"
        finally:
            self._add(StageRecord(stage, status, round(time.perf_counter() - start, 3),
                                  round(_self_high_water_mib(), 1), "pipeline so far"))

    def run(self, stage: str, args: Sequence[str], probe: bool = True) -> StageRecord:
        """Run ``python <args>`` (script path first) as one stage; print and record its cost.

        Args:
            probe: run the script through :mod:`pneumocam.stage_probe` to read its peak GPU
                memory (off for stages that never touch CUDA and start ``spawn`` workers).

        Raises:
            PneumocamError: the stage exited with a non-zero status (recorded as ``failed``).
        """
        print(f"\n=== {stage}: {' '.join(args)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="pneumocam-stage-") as tmp:
            report = Path(tmp) / "probe.json"
            cmd = ([sys.executable, "-m", "pneumocam.stage_probe", str(report), *args] if probe
                   else [sys.executable, *args])
            start = time.perf_counter()
            proc = subprocess.Popen(cmd)
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except KeyboardInterrupt:  # the child got the same Ctrl-C: let it finish
                proc.wait()
                raise
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - start
            gpu, name = _read_probe(report)
        if name:
            self._machine["gpu"] = name
        record = StageRecord(stage, "ran" if proc.returncode == 0 else "failed", round(wall, 3),
                             round(usage.ru_maxrss * _RSS_UNIT / _MIB, 1), "stage",
                             None if gpu is None else round(gpu / _MIB, 1))
        if proc.returncode != 0:
            record.note = f"exit status {proc.returncode}"
            self._add(record)
            raise PneumocamError(
                f"pipeline stage '{stage}' failed (exit {proc.returncode}); fix the error above "
                "and run `python scripts/run_pipeline.py` again: finished stages are not redone."
            )
        gpu_text = "" if record.peak_gpu_mib is None else f", GPU {record.peak_gpu_mib:.0f} MiB"
        print(f"=== {stage}: done in {wall:.0f} s (peak host {record.peak_host_mib:.0f} MiB"
              f"{gpu_text})", flush=True)
        return self._add(record)

    def summary(self) -> dict[str, Any]:
        """The JSON document: stages, totals, settings, machine and provenance."""
        total = time.perf_counter() - self._start
        excluded = sum(r.wall_s for r in self.records if r.stage in self.excluded)
        return {
            "stages": [asdict(r) for r in self.records],
            "total_wall_s": round(total, 3),
            "total_excluding_s": round(total - excluded, 3),
            "excluded_from_total": list(self.excluded),
            "settings": self.settings,
            "machine": self._machine,
            "memory_note": "peak_host_mib: ru_maxrss (resident set) of the stage's process or "
                           "its largest waited-for worker; peak_gpu_mib: "
                           "torch.cuda.max_memory_allocated in the stage's process (null: no CUDA)",
            "provenance": provenance(),
        }

    def write(self) -> Path:
        """(Re)write ``metrics/pipeline_timing.json`` atomically; return its path."""
        return write_json_atomic(self.path, self.summary())

    def print_table(self) -> None:
        """One line per stage: status, wall time, peak host and GPU memory."""
        print(f"\nStage timing ({self.path}):")
        for r in self.records:
            host = "-" if r.peak_host_mib is None else f"{r.peak_host_mib:.0f} MiB"
            gpu = "-" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.0f} MiB"
            print(f"  {r.stage:<24} {r.status:<8} {r.wall_s:8.1f} s  host {host:>10}  GPU {gpu}")


def _read_probe(path: Path) -> tuple[float | None, str | None]:
    """``(peak GPU bytes, GPU name)`` from a :mod:`pneumocam.stage_probe` report (None: absent)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    value, name = doc.get("gpu_peak_bytes"), doc.get("gpu_name")
    return (float(value) if isinstance(value, (int, float)) else None,
            name if isinstance(name, str) else None)
