"""notebooks/03-Interpretability.ipynb runs top to bottom on two tiny trained runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO
from notebook_runner import cell_text, run_notebook
from test_interpret import build_root

NOTEBOOK = REPO / "notebooks" / "03-Interpretability.ipynb"


@pytest.mark.slow
def test_notebook_runs_on_tiny_profile(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_root(root, ("original", "balanced"), steps=2)
    nb = run_notebook(NOTEBOOK, {"n": 2, "n_grid": 2, "batch_size": 16, "n_boot": 20,
                                 "sanity_images": 3, "device": "cpu", "n_compare": 2},
                      cwd=REPO / "notebooks", env={"PNEUMOCAM_ROOT": str(root)}, timeout=300)
    text = cell_text(nb)
    assert "SYNTHETIC DEMO DATA" in text
    # the conclusions were built from the numbers: both runs' pointing-game values appear
    for run in ("original", "balanced"):
        report = json.loads((root / "metrics" / f"{run}_localization.json").read_text())
        assert f"{report['pointing_game']['value']:.3f}" in text
        assert (root / "metrics" / f"{run}_maps.npy").is_file()
        assert (root / "images" / "cam" / f"{run}_grid_tp.png").is_file()
    # one map by hand (forward hook + einsum + bilinear upsampling) equals compute_cams, and its
    # spatial mean plus fc.bias is the logit
    assert "max |by hand - compute_cams| = " in text
    match = re.search(r"map \+ fc\.bias = (-?[\d.]+); logit = (-?[\d.]+)", text)
    assert match and abs(float(match[1]) - float(match[2])) <= 1e-3 * max(1.0, abs(float(match[2])))
    assert (root / "images" / "cam" / "balanced_cam_by_hand.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(root / "metrics" / "localization_comparison.csv")
    assert table["name"].tolist()[:2] == ["original", "balanced"]
    assert table["baseline"].tolist() == [False, False, True, True, True]
    for name in ("localization_comparison.png", "comparison_maps.png"):
        assert (root / "images" / "cam" / name).read_bytes()[:4] == b"\x89PNG"
    conclusions = (root / "metrics" / "localization_comparison_conclusions.txt").read_text()
    assert conclusions.strip() in text
    assert "randomisation sanity check" in conclusions
    assert any("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))
    assert not any(c.get("outputs") for c in json.loads(NOTEBOOK.read_text())["cells"]
                   if c["cell_type"] == "code")


@pytest.mark.slow
def test_notebook_runs_after_the_main_job_alone(tmp_path: Path) -> None:
    """Only weights/balanced exists (``python scripts/train_balanced.py``): the notebook
    interprets it, says which command adds 'original', and skips the side-by-side figure."""
    root = tmp_path / "root"
    build_root(root, ("balanced",), steps=2)
    nb = run_notebook(NOTEBOOK, {"n": 2, "n_grid": 2, "batch_size": 16, "n_boot": 20,
                                 "sanity_images": 3, "device": "cpu", "n_compare": 2},
                      cwd=REPO / "notebooks", env={"PNEUMOCAM_ROOT": str(root)}, timeout=300)
    text = cell_text(nb)
    assert "python scripts/train_original.py` adds it" in text
    assert "no side-by-side" in text
    report = json.loads((root / "metrics" / "balanced_localization.json").read_text())
    assert f"{report['pointing_game']['value']:.3f}" in text
    assert not (root / "metrics" / "original_localization.json").exists()
    assert not (root / "images" / "cam" / "comparison_maps.png").exists()
    table = pd.read_csv(root / "metrics" / "localization_comparison.csv")
    assert table["name"].tolist()[0] == "balanced"
