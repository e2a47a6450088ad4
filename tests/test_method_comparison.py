"""Every CAM method on the same split (``scripts/interpret.py --method all``): one table whose
numbers are the interpretation stage's own, paired against the best image-free baseline."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from test_interpret import build_root

from pneumocam import paths
from pneumocam.cam import METHODS
from pneumocam.errors import ConfigError
from pneumocam.method_comparison import (
    TABLE_COLUMNS,
    MethodsConfig,
    best_baselines,
    compare_methods,
    output_paths,
    parse_methods,
    rank_methods,
)

COMPARED = ("cam", "layercam", "scorecam")  # gradcam's and the fused map's rules: test_cam.py


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A tiny trained run (48 px: layer4 2x2, layer3 3x3) and its method comparison."""
    root = tmp_path_factory.mktemp("methods")
    weights = build_root(root, ("balanced",), steps=3)["balanced"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.ROOT_ENV_VAR, str(root))
        result = compare_methods(MethodsConfig(weights=weights, methods=COMPARED, batch_size=8,
                                               device="cpu", n_boot=50, slow_limit=4))
    return root, weights, result


def test_table_figures_and_json_are_written(compared, monkeypatch):
    root, _, result = compared
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    out = output_paths("balanced")
    assert set(result["outputs"]) == {"table", "json", "figure", "maps_figure"}
    assert all(p.is_file() for p in out.values())
    assert out["figure"] == root / "images" / "balanced" / "methods.png"
    table = pd.read_csv(out["table"])
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table["method"].tolist() == list(COMPARED)
    assert table.set_index("method").loc["layercam", "feature_map"] == "3x3"  # layer3 at 48 px
    assert table.set_index("method").loc["cam", "feature_map"] == "2x2"
    assert (table["maps_per_second"] > 0).all() and table["device"].str.startswith("CPU").all()
    doc = json.loads(out["json"].read_text())
    assert doc["arch"] == "resnet18" and "provenance" in doc and doc["synthetic_demo"]
    assert sorted(doc["ranking"]) == sorted(COMPARED) and len(doc["examples"]["methods"]) == 3
    assert doc["ranking"] == rank_methods(doc["rows"])


def test_slow_method_runs_on_a_stated_subset(compared):
    rows = {r["method"]: r for r in compared[2]["rows"]}
    assert rows["scorecam"]["n_split_images"] == 4 and "4 images of each split" in rows[
        "scorecam"]["subset"]
    assert rows["scorecam"]["n_images"] == 2  # half of the tiny split is positive
    assert rows["cam"]["n_split_images"] == 10 and rows["cam"]["subset"] == ""


def test_stratified_subset_keeps_positives(compared):
    from pneumocam.method_comparison import stratified_subset
    from pneumocam.processed import read_manifest
    from pneumocam.split_maps import SplitWithBoxes

    root = compared[0]
    folder = root / "data" / "Processed"
    split = SplitWithBoxes.load(folder, "test", read_manifest(folder), None)
    sub = stratified_subset(split, 3)
    assert len(sub.data) == 3 and sub.pos.sum() == 2  # round(3 * 5 / 10) positives
    assert sub.ids == sorted(sub.ids) and set(sub.ids) <= set(split.ids)
    assert stratified_subset(split, 1).pos.sum() == 1  # never without a positive
    assert stratified_subset(split, 50) is split


def test_numbers_are_the_interpretation_stages_own(compared, monkeypatch):
    """The cam row equals what interpret() reports for --method cam on the same split, and each
    paired column is the report's difference to the best baseline."""
    from pneumocam.interpret import InterpretConfig, interpret

    root, weights, result = compared
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    single = interpret(InterpretConfig(weights=weights, method="cam", n=0, n_grid=0,
                                       batch_size=8, device="cpu", n_boot=50, sanity_images=2))
    row = next(r for r in result["rows"] if r["method"] == "cam")
    for m in ("pointing_game", "mass_in_boxes", "iou"):
        assert row[m] == pytest.approx(single[m]["value"], nan_ok=True)
        assert [row[f"{m}_lo"], row[f"{m}_hi"]] == pytest.approx(single[m]["ci95"], nan_ok=True)
    assert row["rsna_metric"] == pytest.approx(single["detection"]["rsna_metric"], nan_ok=True)

    report = result["reports"]["cam"]
    best = best_baselines(report)
    values = {k: report["baselines"][k]["pointing_game"]["value"] for k in report["baselines"]}
    assert values[best["pointing_game"]] == max(values.values())
    assert best["iou"] != "fixed_point" and best["mass_in_boxes"] != "fixed_point"
    for m, key in best.items():
        paired = report["paired"][key][m]
        assert row[f"{m}_baseline"] == key
        assert row[f"{m}_difference"] == pytest.approx(paired["difference"], nan_ok=True)
        assert row[f"{m}_verdict"] in ("beats", "is beaten by", "cannot be told apart from",
                                       "has no paired comparison with")
    det = report["detection"]
    assert row["rsna_metric_baseline"] == "mean_box_prior"
    assert math.isfinite(det["baseline"]["value"]) or det["baseline"]["n"] == 0


def test_parse_methods_names_the_allowed_list():
    assert parse_methods("all") == tuple(METHODS)
    assert parse_methods(" cam, layercam ") == ("cam", "layercam")
    for bad in ("cam,gradcam2", "", "cam,cam"):
        with pytest.raises(ConfigError) as err:
            parse_methods(bad)
        assert "layercam-fused" in str(err.value) and "--methods" in str(err.value)


def test_script_flags(compared, capsys):
    """--method all means every method; a bad --methods is a usage error naming the choices;
    a --methods run writes its table under the quick-look name with --limit."""
    import importlib.util

    from helpers import REPO, run_script

    spec = importlib.util.spec_from_file_location("interpret_script", REPO / "scripts" / "interpret.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(["--method", "all"])
    assert args.method == "all" and args.methods is None  # main() then compares METHODS
    assert script.parse_args(["--methods", "all"]).methods == tuple(METHODS)
    with pytest.raises(SystemExit) as exit_:
        script.parse_args(["--methods", "cam,nope"])
    assert exit_.value.code == 2
    assert "nope" in capsys.readouterr().err

    root, weights, _ = compared
    ok = run_script("interpret.py", "--weights", str(weights), "--methods", "cam,eigencam",
                    "--limit", "6", "--n-boot", "20", "--device", "cpu", root=root, timeout=600)
    assert ok.returncode == 0, ok.stderr
    table = pd.read_csv(root / "metrics" / "balanced_limit6_methods.csv")
    assert table["method"].tolist() == ["cam", "eigencam"]
    assert "best first:" in ok.stdout


def test_best_baseline_rule():
    """The fixed point competes on the pointing game only; otherwise the highest value wins."""
    def base(pg, mass, iou):
        return {"pointing_game": {"value": pg}, "mass_in_boxes": {"value": mass},
                "iou": {"value": iou}}

    report = {"baselines": {"fixed_point": base(0.5, 0.5, 0.01),
                            "mean_box_prior": base(0.3, 0.2, 0.25),
                            "uniform_random": base(0.1, 0.1, float("nan"))}}
    assert best_baselines(report) == {"pointing_game": "fixed_point",
                                      "mass_in_boxes": "mean_box_prior", "iou": "mean_box_prior"}
