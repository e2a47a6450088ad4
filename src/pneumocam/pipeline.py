"""The whole study in one command: preprocess -> train original -> train balanced -> compare -> interpret.

Each stage runs as its own script in a subprocess, exactly as a person would run it, so a
stage's memory is released before the next starts and a crash names the stage. The pipeline
resumes where a previous run stopped:

- preprocessing is skipped when ``data/Processed`` holds valid outputs (the preprocess stage
  itself re-uses finished arrays);
- a training run with ``metrics/<run>_eval.json`` is done; one with ``weights/<run>/last.pth``
  but no evaluation is continued with ``--resume``;
- interpretation is skipped when its localization JSON is newer than the run's best weights;
- the comparison is cheap and always recomputed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import PneumocamError

RUNS = ("original", "balanced")


@dataclass
class PipelineConfig:
    """Settings of the one-command study.

    Attributes:
        data_dir: RSNA-layout folder; None picks the real data when present, else the demo.
        processed_dir: output of preprocessing (default ``data/Processed``).
        epochs: training epochs for both runs; None lets training pick (short on demo data).
        device: ``auto`` | ``cpu`` | ``cuda``.
        method: CAM method for interpretation.
        n_overlays: CAM overlays saved per run.
        n_boot: bootstrap resamples behind every 95% interval.
        extra_train_args: passed verbatim to both training scripts.
    """

    data_dir: Path | None = None
    processed_dir: Path | None = None
    epochs: int | None = None
    device: str = "auto"
    method: str = "cam"
    n_overlays: int = 32
    seed: int = 0
    n_boot: int = 1000
    extra_train_args: list[str] = field(default_factory=list)


# The scripts live in the checkout this package is installed from (editable install), which
# stays put when PNEUMOCAM_ROOT moves the outputs elsewhere.
_SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str) -> str:
    return str(_SCRIPTS_DIR / name)


def _run(stage: str, args: list[str]) -> None:
    print(f"\n=== {stage}: {' '.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *args])
    if result.returncode != 0:
        raise PneumocamError(
            f"pipeline stage '{stage}' failed (exit {result.returncode}); fix the error above and "
            "run `python scripts/run_pipeline.py` again: finished stages are not redone."
        )
    print(f"=== {stage}: done in {time.perf_counter() - start:.0f} s", flush=True)


def _training_args(config: PipelineConfig, run: str, processed: Path) -> list[str] | None:
    """Arguments for one training run, or None when the run is already finished."""
    files = paths.run_files(run)
    if files["eval"].is_file() and files["best"].is_file():
        print(f"=== train {run}: finished earlier (metrics/{run}_eval.json); skipped", flush=True)
        return None
    script = "train_original.py" if run == "original" else "train_balanced.py"
    args = [_script(script), "--data-dir", str(processed), "--run-name", run,
            "--device", config.device, "--seed", str(config.seed), "--n-boot", str(config.n_boot)]
    if config.epochs is not None:
        args += ["--epochs", str(config.epochs)]
    if files["last"].is_file():
        args.append("--resume")
    return args + list(config.extra_train_args)


def _interpret_done(run: str) -> bool:
    report = paths.metrics_dir() / f"{run}_localization.json"
    best = paths.run_weights_dir(run) / "best.pth"
    return report.is_file() and best.is_file() and report.stat().st_mtime >= best.stat().st_mtime


def run_pipeline(config: PipelineConfig) -> dict[str, Path]:
    """Run every stage that is not finished yet; return where the results are."""
    from .preprocess import ensure_processed

    start = time.perf_counter()
    processed = ensure_processed(out_dir=config.processed_dir, data_dir=config.data_dir)
    for run in RUNS:
        args = _training_args(config, run, processed)
        if args is not None:
            _run(f"train {run}", args)
    _run("compare", [_script("compare.py"), "--runs", *RUNS, "--n-boot", str(config.n_boot),
                     "--seed", str(config.seed)])
    for run in RUNS:
        if _interpret_done(run):
            print(f"=== interpret {run}: up to date; skipped", flush=True)
            continue
        _run(f"interpret {run}", [
            _script("interpret.py"), "--weights", str(paths.run_weights_dir(run) / "best.pth"),
            "--data-dir", str(processed), "--method", config.method, "--n", str(config.n_overlays),
            "--device", config.device, "--n-boot", str(config.n_boot), "--seed", str(config.seed),
            "--save-maps",
        ])
    outputs = {
        "processed data": processed,
        "weights": paths.weights_dir(),
        "metrics tables": paths.metrics_dir(),
        "comparison table": paths.metrics_dir() / "comparison.csv",
        "comparison figure": paths.images_dir() / "comparison.png",
        "training figures": paths.images_dir(),
        "CAM overlays": paths.images_dir() / "cam",
    }
    minutes = (time.perf_counter() - start) / 60
    print(f"\nStudy finished in {minutes:.1f} min. Results:")
    for name, path in outputs.items():
        print(f"  {name:<18} {path}")
    return outputs
