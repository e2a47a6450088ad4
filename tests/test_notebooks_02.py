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
