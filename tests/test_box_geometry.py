"""Box geometry and image-free baselines of a dataset (pneumocam.box_geometry)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_processed

from pneumocam import box_geometry, localization


def test_baselines_match_what_localization_report_computes() -> None:
    rng = np.random.default_rng(0)

    def boxes(n: int) -> list[list[list[float]]]:
        return [[[float(rng.integers(0, 20)), float(rng.integers(0, 20)), 10.0, 12.0]]
                for _ in range(n)]

    train, val, test = boxes(60), boxes(20), boxes(25)
    base = box_geometry.image_free_baselines(train, test, val, size=32)
    maps = rng.random((25, 32, 32)).astype(np.float32)
    report = localization.localization_report(maps, test, train, val_maps=maps[:20],
                                              val_boxes=val, n_boot=20)
    assert base["fixed_point_pointing_game"] == pytest.approx(
        report["baselines"]["fixed_point"]["pointing_game"]["value"])
    assert base["mean_box_prior_iou"] == pytest.approx(
        report["baselines"]["mean_box_prior"]["iou"]["value"])
    assert base["mean_box_prior_threshold"] == report["baselines"]["mean_box_prior"]["iou_threshold"]


def test_dataset_geometry_writes_the_table_and_the_baselines(tiny_root: Path, tmp_path: Path) -> None:
    processed = tiny_root / "data" / "Processed"
    if not (processed / "manifest.csv").is_file():
        processed = make_processed(tiny_root)
    table, doc = box_geometry.dataset_geometry(processed, tmp_path / "m")
    assert list(table.index) == list(box_geometry.RSNA_STAGE2_BOX_GEOMETRY)
    assert {"mean", "mean_rsna", "mean_ratio", "q95_rsna"} <= set(table.columns)
    saved = pd.read_csv(tmp_path / "m" / "box_geometry.csv", index_col="quantity")
    assert saved.loc["width", "mean"] == pytest.approx(table.loc["width", "mean"])
    written = json.loads((tmp_path / "m" / "image_free_baselines.json").read_text())
    assert written["rsna_real"] == box_geometry.RSNA_BASELINES_224
    assert 0.0 <= written["test"]["fixed_point_pointing_game"] <= 1.0
    assert written["test"]["n_eval"] > 0 and doc["size"] == written["size"]
