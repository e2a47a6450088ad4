"""compare_runs and scripts/compare.py: paired bootstrap of AUC differences on constructed runs,
and the refusals (missing files, mismatched patients, mixed data sources)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumocam import paths
from pneumocam.compare import compare_runs, resolve_runs
from pneumocam.errors import DataSourceError, RunOutputsError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"
DEMO = {"kind": "demo", "path": "data/demo"}
N = 400


def _base(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    view = np.where(rng.random(n) < 0.45, "AP", "PA")
    y = (rng.random(n) < np.where(view == "AP", 0.4, 0.12)).astype(int)
    return pd.DataFrame({"patientId": [f"pid{i:04d}" for i in range(n)], "label": y,
                         "view_position": view})


def _probs(base: pd.DataFrame, signal: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = base["label"].to_numpy()
    return 1 / (1 + np.exp(-(signal * y - 1.0 + rng.normal(0, 1, len(y)))))


def _write_run(run: str, test: pd.DataFrame, source: dict = DEMO, threshold: float = 0.4,
               history: bool = True) -> None:
    """The files the trainer leaves: predictions, eval JSON (the keys compare reads), history."""
    m = paths.metrics_dir()
    m.mkdir(parents=True, exist_ok=True)
    test.to_csv(m / f"{run}_predictions_test.csv", index=False)
    (m / f"{run}_eval.json").write_text(json.dumps({
        "run": run, "data_source": source, "synthetic_demo": source["kind"] == "demo",
        "operating_threshold": threshold, "operating_threshold_method": "youden_j_on_validation",
    }))
    if history:
        pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [0.7, 0.6, 0.5, 0.45],
                      "val_loss": [0.6, 0.5, 0.55, 0.6], "val_auc": [0.6, 0.7, 0.75, 0.72]}
                     ).to_csv(m / f"{run}.csv", index=False)


@pytest.fixture
def root(project_root):
    return project_root


def test_clearly_better_run_has_a_diff_ci_above_zero(root):
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 0.5, 1)))
    _write_run("balanced", base.assign(prob=_probs(base, 3.0, 2)))
    table = compare_runs(n_boot=300, seed=0)
    assert list(table["run"]) == ["original", "balanced"]
    orig, bal = table.iloc[0], table.iloc[1]
    assert bal["roc_auc"] > orig["roc_auc"] + 0.2
    assert bal["auc_diff_vs_reference"] == pytest.approx(bal["roc_auc"] - orig["roc_auc"])
    assert 0 < bal["auc_diff_ci95_lo"] < bal["auc_diff_vs_reference"] < bal["auc_diff_ci95_hi"]
    assert bal["auc_diff_share_le_0"] == 0.0
    assert np.isnan(orig["auc_diff_vs_reference"]) and bal["reference_run"] == "original"
    for col in ("roc_auc_ci95_lo", "average_precision_ci95_hi", "sensitivity_at_op",
                "specificity_at_0.5", "f1_at_op_ci95_lo", "precision_at_0.5", "ece",
                "roc_auc_AP_view", "roc_auc_PA_view", "view_baseline_roc_auc", "data_source_kind"):
        assert col in table.columns, col
    assert table["best_epoch"].tolist() == [3, 3] and table["epochs"].tolist() == [4, 4]

    csv = pd.read_csv(paths.metrics_dir() / "comparison.csv")
    assert list(csv["run"]) == ["original", "balanced"]
    assert csv.loc[1, "auc_diff_ci95_lo"] == pytest.approx(bal["auc_diff_ci95_lo"])
    saved = json.loads((paths.metrics_dir() / "comparison.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert saved["config"] == {"runs": None, "n_boot": 300, "seed": 0}
    diff = [d for d in saved["paired_differences"] if d["metric"] == "roc_auc"][0]
    assert diff["run"] == "balanced" and diff["reference"] == "original" and diff["ci95"][0] > 0
    assert saved["synthetic_demo"] is True and "provenance" in saved
    assert (paths.images_dir() / "comparison.png").stat().st_size > 5000


def test_identical_runs_differ_by_exactly_zero_and_row_order_does_not_matter(root):
    base = _base()
    p = _probs(base, 1.5, 3)
    _write_run("original", base.assign(prob=p))
    # same predictions, rows shuffled: pairing goes by patientId, not by row
    _write_run("balanced", base.assign(prob=p).sample(frac=1.0, random_state=0))
    table = compare_runs(["balanced", "original"], n_boot=200, seed=1)
    assert list(table["run"]) == ["original", "balanced"]  # the reference first
    row = table.iloc[1]
    assert row["auc_diff_vs_reference"] == 0.0
    assert row["auc_diff_ci95_lo"] == 0.0 and row["auc_diff_ci95_hi"] == 0.0
    assert row["roc_auc"] == table.iloc[0]["roc_auc"]


def test_seeded_paired_bootstrap_is_reproducible(root):
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 1.0, 4)))
    _write_run("balanced", base.assign(prob=_probs(base, 1.3, 5)))
    a = compare_runs(n_boot=200, seed=0)
    b = compare_runs(n_boot=200, seed=0)
    c = compare_runs(n_boot=200, seed=9)
    assert a["auc_diff_ci95_lo"].iloc[1] == b["auc_diff_ci95_lo"].iloc[1]
    assert a["auc_diff_ci95_lo"].iloc[1] != c["auc_diff_ci95_lo"].iloc[1]


def test_default_runs_include_posweight_when_present(root):
    base = _base(120)
    for i, run in enumerate(("posweight", "balanced", "original")):
        _write_run(run, base.assign(prob=_probs(base, 1.0 + i, i)), history=False)
    assert resolve_runs(None) == ["original", "balanced", "posweight"]
    table = compare_runs(n_boot=50)
    assert list(table["run"]) == ["original", "balanced", "posweight"]
    assert table["best_epoch"].isna().all()  # no history files: reported empty


def test_mismatched_patient_ids_are_a_clear_error(root):
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 1.0, 1)))
    other = base.assign(prob=_probs(base, 1.0, 2))
    other.loc[0, "patientId"] = "stranger"
    _write_run("balanced", other)
    with pytest.raises(RunOutputsError, match="different test images") as err:
        compare_runs(n_boot=20)
    assert "balanced_predictions_test.csv" in str(err.value)
    assert "stranger" in str(err.value)
    relabel = base.assign(prob=_probs(base, 1.0, 2))
    relabel.loc[0, "label"] = 1 - relabel.loc[0, "label"]
    _write_run("balanced", relabel)
    with pytest.raises(RunOutputsError, match="labels differ"):
        compare_runs(n_boot=20)


def test_mixed_data_sources_are_refused(root):
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 1.0, 1)))
    _write_run("balanced", base.assign(prob=_probs(base, 1.0, 2)),
               source={"kind": "rsna", "path": "data/rsna-pneumonia-detection-challenge"})
    with pytest.raises(DataSourceError, match="different data sources") as err:
        compare_runs(n_boot=20)
    assert "original: demo" in str(err.value) and "balanced: rsna" in str(err.value)
    assert not (paths.metrics_dir() / "comparison.csv").exists()


def test_runs_trained_on_different_splits_are_refused(root):
    """Same kind, same test patients, but one run's processed folder put other patients in the
    training split (preprocess --seed 1): its test numbers are not comparable."""
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 1.0, 1)))
    _write_run("balanced", base.assign(prob=_probs(base, 1.0, 2)))
    for run, fingerprint in (("original", "0123456789abcdef"), ("balanced", "fedcba9876543210")):
        path = paths.metrics_dir() / f"{run}_eval.json"
        doc = json.loads(path.read_text())
        doc["data_identity"] = {"kind": "demo", "labels_sha256": "ab" * 32,
                                "split_fingerprint": fingerprint}
        path.write_text(json.dumps(doc))
    with pytest.raises(DataSourceError, match="different data") as err:
        compare_runs(n_boot=20)
    assert "0123456789abcdef" in str(err.value) and "fedcba9876543210" in str(err.value)
    assert "--data-dir" in str(err.value)
    assert not (paths.metrics_dir() / "comparison.csv").exists()


def test_old_eval_json_falls_back_to_the_runs_config(root):
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 1.0, 1)))
    _write_run("balanced", base.assign(prob=_probs(base, 1.0, 2)))
    for run, fingerprint in (("original", "0123456789abcdef"), ("balanced", "fedcba9876543210")):
        config = paths.run_files(run)["config"]
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"data_identity": {"kind": "demo",
                                                        "split_fingerprint": fingerprint}}))
    with pytest.raises(DataSourceError, match="fedcba9876543210"):
        compare_runs(n_boot=20)


def test_an_unreadable_config_falls_back_to_the_eval_json(root):
    """A config.json that is not UTF-8 (a damaged copy) is read as absent, not a crash."""
    base = _base()
    _write_run("original", base.assign(prob=_probs(base, 1.0, 1)))
    _write_run("balanced", base.assign(prob=_probs(base, 1.0, 2)))
    config = paths.run_files("balanced")["config"]
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_bytes(b"\xff\xfe{not json")
    table = compare_runs(n_boot=20)
    assert set(table["run"]) == {"original", "balanced"}


def test_fewer_than_two_runs_names_the_missing_file_and_script(root):
    base = _base(60)
    _write_run("original", base.assign(prob=_probs(base, 1.0, 1)))
    with pytest.raises(RunOutputsError) as err:
        compare_runs()
    msg = str(err.value)
    assert "balanced_eval.json" in msg and "scripts/train_balanced.py" in msg
    with pytest.raises(RunOutputsError, match="posweight_eval.json not found"):
        compare_runs(["original", "posweight"])


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, paths.ROOT_ENV_VAR: str(root), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_script_cli(root):
    base = _base(150)
    _write_run("original", base.assign(prob=_probs(base, 0.8, 1)))
    missing = _cli(root)
    assert missing.returncode != 0
    assert "balanced_eval.json" in missing.stderr and "Traceback" not in missing.stderr
    _write_run("balanced", base.assign(prob=_probs(base, 2.0, 2)))
    ok = _cli(root, "--runs", "original", "balanced", "--n-boot", "100", "--seed", "3")
    assert ok.returncode == 0, ok.stderr
    assert "synthetic demo data" in ok.stdout
    saved = json.loads((root / "metrics" / "comparison.json").read_text())
    assert saved["config"] == {"runs": ["original", "balanced"], "n_boot": 100, "seed": 3}
    assert (root / "metrics" / "comparison.csv").is_file()
    assert (root / "images" / "comparison.png").is_file()
