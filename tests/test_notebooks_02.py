"""The two training notebooks execute top to bottom on a tiny profile (CPU, PNEUMOCAM_ROOT=tmp)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest_train import make_processed
from notebook_runner import cell_text, run_notebook

from pneumocam import paths

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name,run", [("02-Train-Balanced.ipynb", "balanced"),
                                      ("02-Train-Original.ipynb", "original")])
def test_training_notebook_runs(tmp_path, name, run):
    make_processed(tmp_path)
    params = {"epochs": 1, "limit": 32, "batch_size": 8, "n_boot": 20, "progress": False,
              "device": "cpu"}
    nb = run_notebook(NOTEBOOKS / name, params, cwd=tmp_path,
                      env={paths.ROOT_ENV_VAR: str(tmp_path)}, timeout=300)
    text = cell_text(nb)
    assert f"sampler={run}" in text and "SYNTHETIC DEMO DATA" in text
    assert "test ROC AUC" in text
    assert (tmp_path / "weights" / run / "best.pth").is_file()
    assert len(pd.read_csv(tmp_path / "metrics" / f"{run}.csv")) == 1
    assert (tmp_path / "images" / run / "curves.png").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # learning curves + ROC, confusion, reliability


@pytest.mark.slow
def test_balanced_notebook_ends_with_the_comparison(tmp_path):
    """With the original run present, the balanced notebook compares the two on the test set."""
    import subprocess
    import sys

    make_processed(tmp_path)
    env = {paths.ROOT_ENV_VAR: str(tmp_path), "PATH": "/usr/bin:/bin"}
    script = NOTEBOOKS.parent / "scripts" / "train_original.py"
    done = subprocess.run([sys.executable, str(script), "--epochs", "1", "--limit", "32",
                           "--batch-size", "8", "--n-boot", "20", "--no-progress",
                           "--device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    params = {"epochs": 1, "limit": 32, "batch_size": 8, "n_boot": 20, "progress": False,
              "device": "cpu"}
    nb = run_notebook(NOTEBOOKS / "02-Train-Balanced.ipynb", params, cwd=tmp_path,
                      env={paths.ROOT_ENV_VAR: str(tmp_path)}, timeout=300)
    text = cell_text(nb)
    table = pd.read_csv(tmp_path / "metrics" / "comparison.csv")
    assert table["run"].tolist() == ["original", "balanced"]
    diff = table.set_index("run").loc["balanced", "auc_diff_vs_reference"]
    assert f"paired difference {diff:+.3f}" in text
    assert (tmp_path / "images" / "comparison.png").is_file()
