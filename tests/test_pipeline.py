"""The whole study in one command, on a tiny demo dataset: every stage's outputs, then a resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pneumocam.demo import make_demo_dataset
from pneumocam.preprocess import PreprocessConfig, run_preprocess

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_resumes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    demo = root / "data" / "demo"
    processed = root / "data" / "Processed"
    make_demo_dataset(demo, n=60, seed=3, workers=1, progress=False)
    run_preprocess(PreprocessConfig(data_dir=demo, out_dir=processed, size=64, workers=1,
                                    progress=False))
    env = {"PNEUMOCAM_ROOT": str(root), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), "--epochs", "1",
           "--device", "cpu", "--n", "2", "--n-boot", "20"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Study finished" in first.stdout

    for run in ("original", "balanced"):
        assert (root / "weights" / run / "best.pth").is_file()
        assert json.loads((root / "metrics" / f"{run}_eval.json").read_text())["synthetic_demo"]
        history = pd.read_csv(root / "metrics" / f"{run}.csv")
        assert history["epoch"].tolist() == [1]
        assert (root / "metrics" / f"{run}_localization.json").is_file()
        assert (root / "metrics" / f"{run}_maps.npy").is_file()
        assert (root / "images" / "cam" / f"{run}_grid_tp.png").is_file()
    comparison = pd.read_csv(root / "metrics" / "comparison.csv")
    assert set(comparison["run"]) == {"original", "balanced"}
    assert (root / "images" / "comparison.png").is_file()

    # A second call finds every training and interpretation done and redoes none of them.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("finished earlier") == 2
    assert second.stdout.count("up to date; skipped") == 2
    assert pd.read_csv(root / "metrics" / "balanced.csv")["epoch"].tolist() == [1]


def test_pipeline_stops_with_the_failing_stage_named(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cmd = [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), "--epochs", "1",
           "--device", "cpu", "--data-dir", str(tmp_path / "no-such-folder")]
    result = subprocess.run(cmd, env={"PNEUMOCAM_ROOT": str(root), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "error:" in result.stderr and "no-such-folder" in result.stderr
    assert "Traceback" not in result.stderr
