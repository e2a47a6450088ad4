"""evaluate_run on tiny fake runs: per-view AUCs and the view-only baseline, every file and key
written, strict JSON, the demo flag and the visible demo note on every figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pneumocam import metrics, paths, plots
from pneumocam.errors import DataSourceError, RunOutputsError
from pneumocam.evaluation import Predictions, class_analysis, evaluate_run, view_analysis

DEMO = {"kind": "demo", "path": "data/demo"}
RSNA = {"kind": "rsna", "path": "data/rsna-pneumonia-detection-challenge"}
FIGURES = ("curves", "roc", "pr", "confusion", "reliability")


def _preds(n: int, seed: int, with_class: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    view = np.where(rng.random(n) < 0.45, "AP", "PA")
    view[:3] = ""  # a few unknown views
    y = (rng.random(n) < np.where(view == "AP", 0.4, 0.15)).astype(int)
    y[:2], y[2:4] = 1, 0
    p = 1 / (1 + np.exp(-(1.5 * y + 0.5 * (view == "AP") - 1.2 + rng.normal(0, 1, n))))
    df = pd.DataFrame({"patientId": [f"id{seed}_{i}" for i in range(n)], "label": y, "prob": p,
                       "view_position": view})
    if with_class:
        other = np.where(rng.random(n) < 0.5, "Normal", "No Lung Opacity / Not Normal")
        df["class"] = np.where(y == 1, "Lung Opacity", other)
    return df


def _history(path):
    pd.DataFrame({
        "epoch": [1, 2, 3], "train_loss": [0.7, 0.5, 0.4], "val_loss": [0.6, 0.45, 0.5],
        "val_auc": [0.7, 0.85, 0.8], "val_ap": [0.4, 0.6, 0.55], "lr": [1e-3] * 3,
    }).to_csv(path, index=False)
    return path


def _strict_json(path):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_auc_per_view_and_view_only_baseline_on_a_constructed_case():
    view = np.array(["AP"] * 4 + ["PA"] * 4 + [""])
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1])
    p = np.array([0.9, 0.4, 0.5, 0.1, 0.3, 0.2, 0.35, 0.1, 0.5])
    pred = Predictions(y=y, p=p, view=view, cls=np.full(9, ""), ids=np.arange(9).astype(str))
    out = view_analysis(pred, n_boot=50, seed=0)
    # AP: positives .9,.4 vs negatives .5,.1 -> 3 of 4 pairs; PA: .3 beats .2,.1 not .35 -> 2/3
    assert out["by_view"]["AP"]["roc_auc"]["value"] == pytest.approx(3 / 4)
    assert out["by_view"]["PA"]["roc_auc"]["value"] == pytest.approx(2 / 3)
    assert out["by_view"]["unknown_view_n"] == 1
    # view only (AP=1) on the 8 known-view images: 3 pos x 5 neg = 15 pairs; AP pos vs PA neg
    # 6 wins, AP pos vs AP neg 4 ties, PA pos vs PA neg 3 ties -> (6 + 3.5) / 15
    base = out["view_position_baseline"]
    assert base["roc_auc"]["value"] == pytest.approx(9.5 / 15)
    assert base["n"] == 8
    diff = base["model_minus_view_auc"]["value"]
    assert diff == pytest.approx(base["model_roc_auc_same_images"]["value"] - 9.5 / 15)


def test_view_and_class_analyses_say_why_when_undefined():
    n = 6
    pred = Predictions(y=np.array([0, 1, 0, 1, 0, 0]), p=np.linspace(0.1, 0.9, n),
                       view=np.array(["PA"] * n), cls=np.full(n, ""),
                       ids=np.arange(n).astype(str))
    out = view_analysis(pred, n_boot=20, seed=0)
    assert out["by_view"]["AP"]["roc_auc"] is None and "no AP" in out["by_view"]["AP"]["reason"]
    base = out["view_position_baseline"]  # one view: a constant score, AUC 0.5, said so
    assert base["roc_auc"]["value"] == 0.5 and "only one view" in base["note"]
    one_class = Predictions(y=np.zeros(4, dtype=int), p=np.linspace(0, 1, 4),
                            view=np.array(["AP", "PA"] * 2), cls=np.full(4, ""),
                            ids=np.arange(4).astype(str))
    base = view_analysis(one_class, n_boot=20, seed=0)["view_position_baseline"]
    assert base["roc_auc"] is None and "one class" in base["reason"]
    cls = class_analysis(pred, n_boot=20, seed=0)
    for key in ("lung_opacity_vs_normal", "lung_opacity_vs_not_normal"):
        assert cls[key]["roc_auc"] is None and "unknown" in cls[key]["reason"]


def test_evaluate_run_writes_every_file_with_the_right_keys(project_root, tmp_path, monkeypatch):
    captured = []
    real_save = plots.save_figure

    def spy(fig, path, dpi=plots.DPI):
        captured.append((path.name, plots.has_demo_note(fig)))
        return real_save(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", spy)
    hist = _history(tmp_path / "original.csv")
    result = evaluate_run("original", _preds(120, 0), _preds(200, 1), DEMO,
                          history_csv=hist, seed=0, n_boot=200)

    out = paths.metrics_dir() / "original_eval.json"
    assert out.is_file()
    saved = _strict_json(out)
    assert saved["roc_auc"] == result["roc_auc"]
    for key in ("run", "n_boot", "seed", "data_source", "synthetic_demo", "roc_auc",
                "average_precision", "operating_threshold", "operating_threshold_method",
                "at_operating_threshold", "at_0.5", "calibration", "ece", "by_view",
                "view_position_baseline", "by_class", "prevalence", "counts", "baselines",
                "history", "figures", "provenance"):
        assert key in saved, key
    assert saved["run"] == "original" and saved["n_boot"] == 200 and saved["seed"] == 0
    assert saved["synthetic_demo"] is True and saved["data_source"] == DEMO
    assert isinstance(saved["operating_threshold"], float)
    assert saved["operating_threshold_method"] == "youden_j_on_validation"
    for key in ("roc_auc", "average_precision"):
        lo, hi = saved[key]["ci95"]
        assert lo <= saved[key]["value"] <= hi
    op = saved["at_operating_threshold"]
    assert op["threshold"] == saved["operating_threshold"]
    cm = op["confusion_matrix"]
    assert sum(cm.values()) == 200 == saved["counts"]["test"]["n"]
    for m in ("accuracy", "sensitivity", "specificity", "precision", "f1"):
        assert set(op[m]) >= {"value", "ci95"} and set(saved["at_0.5"][m]) >= {"value", "ci95"}
    assert saved["calibration"]["n_bins"] == 15 and len(saved["calibration"]["count"]) == 15
    assert saved["baselines"]["prevalence_only"] == {
        "roc_auc": 0.5, "average_precision": saved["prevalence"]}
    assert saved["baselines"]["view_position"]["roc_auc"] == \
        saved["view_position_baseline"]["roc_auc"]["value"]
    assert saved["by_view"]["AP"]["roc_auc"]["value"] is not None
    assert saved["by_class"]["lung_opacity_vs_normal"]["roc_auc"]["value"] > 0.5
    assert saved["history"]["best_epoch"] == 2 and saved["history"]["epochs"] == 3
    assert saved["provenance"]["versions"]["numpy"]

    img = paths.run_images_dir("original")
    for name in FIGURES:
        assert (img / f"{name}.png").stat().st_size > 5000
        assert saved["figures"][name].endswith(f"{name}.png")
    # every figure made from demo data carries the visible note
    assert sorted(n for n, _ in captured) == sorted(f"{f}.png" for f in FIGURES)
    assert all(note for _, note in captured)


def test_real_source_has_no_demo_note_and_no_curves_without_history(project_root, tmp_path, monkeypatch):
    captured = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure",
                        lambda fig, path, dpi=plots.DPI: (captured.append(plots.has_demo_note(fig)),
                                                          real_save(fig, path, dpi))[1])
    res = evaluate_run("balanced", _preds(80, 2, with_class=False), _preds(100, 3, False), RSNA,
                       n_boot=50)
    assert res["synthetic_demo"] is False and res["figures"]["curves"] is None
    assert res["history"] is None
    assert captured and not any(captured)
    assert res["by_class"]["lung_opacity_vs_normal"]["roc_auc"] is None
    assert not (paths.run_images_dir("balanced") / "curves.png").exists()


def test_demo_note_is_on_each_plot_function_only_for_demo():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.8, 0.3, 0.6, 0.4, 0.2])
    for demo in (True, False):
        figs = [
            plots.plot_roc(y, p, "r", {"value": 0.9, "ci95": [0.8, 1.0]},
                           view=np.array(["AP", "PA"] * 3), demo=demo),
            plots.plot_pr(y, p, "r", None, demo=demo),
            plots.plot_confusion({"tn": 2, "fp": 1, "fn": 0, "tp": 3}, 0.5, "r", demo=demo),
            plots.plot_reliability(metrics.calibration(y, p), y, p, "r", demo=demo),
            plots.plot_training_curves(pd.DataFrame({"epoch": [1], "val_auc": [0.5]}), "r",
                                       1, demo=demo),
        ]
        assert [plots.has_demo_note(f) for f in figs] == [demo] * len(figs)
        assert all("r:" in f.axes[0].get_title() for f in figs)  # run name in titles


def test_one_class_test_set_gives_nulls_not_a_crash(project_root, tmp_path, monkeypatch):
    test = _preds(30, 4)
    test["label"] = 0
    val = _preds(30, 5)
    val["label"] = 1  # one-class validation: no Youden threshold
    res = evaluate_run("tiny", val, test, DEMO, n_boot=30)
    assert res["roc_auc"]["value"] is None and res["roc_auc"]["n_boot_skipped"] == 30
    assert res["operating_threshold"] == 0.5
    assert res["operating_threshold_method"].startswith("fallback")
    assert math.isclose(res["at_0.5"]["specificity"]["value"],
                        res["at_0.5"]["confusion_matrix"]["tn"] / 30)
    _strict_json(paths.metrics_dir() / "tiny_eval.json")


def test_bad_inputs_raise_clear_errors(project_root, tmp_path, monkeypatch):
    val, test = _preds(20, 6), _preds(20, 7)
    with pytest.raises(DataSourceError, match="kind"):
        evaluate_run("x", val, test, {"path": "somewhere"}, n_boot=10)
    with pytest.raises(RunOutputsError, match=r"prob must be"):
        evaluate_run("x", val, test.assign(prob=test["prob"] * 3), DEMO, n_boot=10)
    with pytest.raises(RunOutputsError, match="missing column"):
        evaluate_run("x", val.drop(columns="prob"), test, DEMO, n_boot=10)
    with pytest.raises(RunOutputsError, match="x_history.csv not found"):
        evaluate_run("x", val, test, DEMO, history_csv=tmp_path / "x_history.csv", n_boot=10)
    assert not (paths.metrics_dir() / "x_eval.json").exists()


def test_predictions_from_other_data_than_the_run_was_trained_on_are_refused(project_root, tmp_path,
                                                                             monkeypatch):
    trained = {"kind": "demo", "labels_sha256": "ab" * 32, "split_fingerprint": "0123456789abcdef"}
    config = paths.run_files("x")["config"]
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"data_identity": trained}))
    val, test = _preds(40, 6), _preds(40, 7)
    other = {**trained, "split_fingerprint": "fedcba9876543210"}
    with pytest.raises(DataSourceError, match="fedcba9876543210") as err:
        evaluate_run("x", val, test, DEMO, n_boot=10, data_identity=other)
    assert "0123456789abcdef" in str(err.value)
    assert not (paths.metrics_dir() / "x_eval.json").exists()
    result = evaluate_run("x", val, test, DEMO, n_boot=10, data_identity=trained)
    assert _strict_json(paths.metrics_dir() / "x_eval.json")["data_identity"] == trained
    assert result["data_identity"] == trained
