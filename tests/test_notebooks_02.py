"""The two training notebooks execute top to bottom on a tiny profile (CPU, PNEUMOCAM_ROOT=tmp)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from helpers import make_processed
from notebook_runner import cell_text, run_notebook

from pneumocam import paths
from pneumocam.data import SAMPLERS, class_counts, sampler_preview
from pneumocam.processed import load_split
from pneumocam.train import make_batches

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
    assert len(images) >= 5  # sampler batches, learning curves + ROC, confusion, reliability
    # the sampler preview: the table of both draws and its chart, saved beside the run's figures
    assert f"this run drew with '{run}'" in text and "balanced positive" in text
    assert (tmp_path / "images" / run / "sampler_batches.png").read_bytes()[:4] == b"\x89PNG"


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


def _code_cells(name: str) -> list[str]:
    return [c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells
            if c.cell_type == "code"]


def test_the_two_training_notebooks_differ_only_in_the_sampler():
    """Same code cell for cell, but for the run name and the sampler (and the balanced one's
    closing comparison and report, whose `paths` import is the only other difference)."""
    balanced, original = _code_cells("02-Train-Balanced.ipynb"), _code_cells("02-Train-Original.ipynb")
    assert len(balanced) == len(original) + 2
    assert "compare_runs" in balanced[-2] and "write_site" in balanced[-1]
    differing = 0
    for b, o in zip(balanced, original, strict=False):
        if b != o:
            differing += 1
            assert (b.replace('"balanced"', '"original"')
                    .replace("from pneumocam import paths  # noqa: E402\n", "")) == o
    assert differing == 3  # parameters (run_name), imports (paths), TrainConfig (sampler)


@pytest.mark.parametrize("limit_batches", [3, 50])
def test_sampler_preview_counts_the_batches_training_draws(tmp_path, limit_batches):
    """The notebooks' table holds the class counts of the batches `train` draws on the CPU."""
    split = load_split(make_processed(tmp_path), "train")
    batch_size, seed = 8, 3
    table = sampler_preview(split.labels, batch_size, seed=seed, n_batches=limit_batches, epoch=2)
    n = min(limit_batches, len(split) // batch_size)  # the incomplete last batch is dropped
    assert table.index.tolist() == list(range(1, n + 1)) and table.index.name == "batch"
    assert list(table.columns) == [f"{s} {c}" for s in SAMPLERS for c in ("negative", "positive")]
    for sampler in SAMPLERS:
        batches = make_batches(split.images, split.labels, batch_size, sampler, seed,
                               torch.device("cpu"))
        drawn = [class_counts(labels) for _, labels in batches.epoch(2)][:n]
        assert list(zip(table[f"{sampler} negative"], table[f"{sampler} positive"],
                        strict=True)) == drawn
        assert (table[f"{sampler} negative"] + table[f"{sampler} positive"] == batch_size).all()
