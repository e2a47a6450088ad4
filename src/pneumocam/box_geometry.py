"""The geometry of a dataset's opacity boxes, beside the real RSNA stage 2 training labels.

The image-free localization baselines (the best fixed point, the mean-box prior) depend only
on where the boxes are and how big they are, so a demo whose boxes are shaped unlike RSNA's
would give baselines that say nothing about the real ones. :data:`RSNA_STAGE2_BOX_GEOMETRY`
holds the real figures (9,555 boxes on 6,012 positive patients, 1024-px coordinates);
:func:`box_geometry` measures the same quantities on any label table, and
:func:`compare_with_rsna` puts the two side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import localization, paths
from .atomic import write_frame_csv
from .processed import read_manifest, read_stats
from .provenance import provenance, write_json_atomic

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
COLUMNS = ("mean", "sd", "q05", "q25", "q50", "q75", "q95")
NAN = float("nan")

RSNA_STAGE2_BOX_GEOMETRY: Mapping[str, tuple[float, ...]] = {
    # quantity:            mean,  sd,    5%,    25%,   50%,   75%,   95%
    "width": (218, 59, 124, 177, 217, 259, 317),
    "height": (329, 158, 121, 203, 298, 438, 623),
    "centre_x": (503, 205, 240, 314, 415, 709, 787),
    "centre_y": (531, 115, 342, 455, 531, 609, 720),
    "area_share": (0.074, 0.049, 0.016, 0.036, 0.062, 0.102, 0.173),
    "union_share": (0.117, 0.094, 0.018, NAN, 0.087, NAN, 0.31),
}
"""Real stage 2 training boxes: per quantity (mean, sd, 5%, 25%, 50%, 75%, 95%); lengths in
1024-px units, ``area_share`` = box area / image area, ``union_share`` = the union of one
patient's boxes / image area (nan: not published)."""

RSNA_LEFT_HALF_SHARE = 0.535
"""Share of real boxes whose centre lies in the image's left half (the patient's right lung)."""

RSNA_BASELINES_224 = {"fixed_point_pointing_game": 0.576, "mean_box_prior_iou": 0.294,
                      "mean_box_prior_mass_in_boxes": 0.30}
"""Image-free baselines on the real data, fit on 80% of the positive patients and measured on
the other 20% at 224 px: the best fixed point's hit rate, the mean-box prior's IoU (prior
thresholded at 0.225) and the share of its mass inside the boxes."""


def _union_share(boxes: np.ndarray, image_size: int, grid: int = 256) -> float:
    """Area of the union of ``boxes`` ((k, 4) x, y, w, h) over the image area, on a grid."""
    mask = np.zeros((grid, grid), bool)
    scale = grid / image_size
    for x, y, w, h in boxes:
        x0, y0 = int(round(x * scale)), int(round(y * scale))
        x1, y1 = int(round((x + w) * scale)), int(round((y + h) * scale))
        mask[max(0, y0):min(grid, y1), max(0, x0):min(grid, x1)] = True
    return float(mask.mean())


def _row(values: np.ndarray) -> list[float]:
    if values.size == 0:
        return [NAN] * len(COLUMNS)
    return [float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else NAN,
            *(float(q) for q in np.quantile(values, QUANTILES))]


def box_geometry(labels: pd.DataFrame, image_size: int = 1024) -> pd.DataFrame:
    """The quantities of :data:`RSNA_STAGE2_BOX_GEOMETRY`, measured on ``labels``.

    Args:
        labels: RSNA-layout rows ``patientId, x, y, width, height, Target`` (one row per box;
            rows without a box are ignored), coordinates in pixels of ``image_size``.
        image_size: the side of the images the coordinates refer to (1024 for RSNA).

    Returns:
        DataFrame indexed by quantity (width, height, centre_x, centre_y, area_share,
        union_share) with columns mean, sd, q05 ... q95; lengths scaled to 1024-px units, and
        ``attrs["left_half_share"]``, ``attrs["n_boxes"]``, ``attrs["n_patients"]``.
    """
    cols = ["x", "y", "width", "height"]
    boxed = labels.dropna(subset=cols)
    boxed = boxed[boxed["width"].astype(float) > 0]
    b = boxed[cols].to_numpy(dtype=np.float64)
    to_1024 = 1024.0 / image_size
    x, y, w, h = (b[:, i] * to_1024 for i in range(4)) if len(b) else (np.empty(0),) * 4
    cx, cy = x + w / 2, y + h / 2
    unions = np.array([_union_share(g[cols].to_numpy(dtype=np.float64), image_size)
                       for _, g in boxed.groupby("patientId", sort=False)])
    table = pd.DataFrame(
        [_row(w), _row(h), _row(cx), _row(cy), _row(w * h / 1024.0**2), _row(unions)],
        index=list(RSNA_STAGE2_BOX_GEOMETRY), columns=list(COLUMNS))
    table.attrs.update(left_half_share=float((cx < 512).mean()) if len(cx) else NAN,
                       n_boxes=len(b), n_patients=len(unions))
    return table


def rsna_table() -> pd.DataFrame:
    """:data:`RSNA_STAGE2_BOX_GEOMETRY` as a DataFrame in :func:`box_geometry`'s layout."""
    table = pd.DataFrame.from_dict(dict(RSNA_STAGE2_BOX_GEOMETRY), orient="index",
                                   columns=list(COLUMNS)).astype(float)
    table.attrs.update(left_half_share=RSNA_LEFT_HALF_SHARE, n_boxes=9555, n_patients=6012)
    return table


def compare_with_rsna(measured: pd.DataFrame,
                      columns: Sequence[str] = ("mean", "q05", "q50", "q95")) -> pd.DataFrame:
    """``measured`` (from :func:`box_geometry`) beside the real figures: for each quantity and
    column, ``<column>`` (measured), ``<column>_rsna`` and the ratio measured / real."""
    real = rsna_table()
    out = pd.DataFrame(index=measured.index)
    for c in columns:
        out[c] = measured[c]
        out[f"{c}_rsna"] = real[c]
        out[f"{c}_ratio"] = measured[c] / real[c]
    return out


def image_free_baselines(train_boxes: Sequence[Sequence[Sequence[float]]],
                         eval_boxes: Sequence[Sequence[Sequence[float]]],
                         choose_boxes: Sequence[Sequence[Sequence[float]]] | None = None,
                         size: int = 224) -> dict[str, float]:
    """The image-free localization baselines, exactly as :func:`localization.localization_report`
    computes them, without any model: fit on ``train_boxes``, the prior's IoU threshold chosen on
    ``choose_boxes`` (default: the training boxes), measured on ``eval_boxes``.

    Args:
        train_boxes, eval_boxes, choose_boxes: per positive image, its boxes ``[x, y, w, h]`` in
            pixels of a ``size`` x ``size`` array.

    Returns:
        ``fixed_point_pointing_game`` (share of images whose boxes hold the best fixed point),
        ``mean_box_prior_iou``, ``mean_box_prior_mass_in_boxes``, ``mean_box_prior_threshold``,
        ``n_train``, ``n_eval``: comparable with :data:`RSNA_BASELINES_224`; the figures are
        nan when either set holds no positive image.
    """
    if not len(train_boxes) or not len(eval_boxes):  # too few positives (a tiny dataset)
        return {"fixed_point_pointing_game": NAN, "mean_box_prior_iou": NAN,
                "mean_box_prior_mass_in_boxes": NAN, "mean_box_prior_threshold": NAN,
                "n_train": len(train_boxes), "n_eval": len(eval_boxes)}
    x, y = localization.fixed_point_baseline(train_boxes, size)
    point_map = np.zeros((size, size))
    point_map[y, x] = 1.0
    prior = localization.mean_box_prior(train_boxes, size)
    threshold = localization.prior_threshold(prior, choose_boxes or train_boxes)
    point = localization.shared_map_metrics(point_map, eval_boxes, 1.0)
    prior_metrics = localization.shared_map_metrics(prior, eval_boxes, threshold)
    return {"fixed_point_pointing_game": float(point["pointing_game"].mean()),
            "mean_box_prior_iou": float(prior_metrics["iou"].mean()),
            "mean_box_prior_mass_in_boxes": float(prior_metrics["mass_in_boxes"].mean()),
            "mean_box_prior_threshold": threshold,
            "n_train": len(train_boxes), "n_eval": len(eval_boxes)}


def split_baselines(manifest: pd.DataFrame, size: int = 224,
                    eval_split: str = "test") -> dict[str, float]:
    """:func:`image_free_baselines` of a processed dataset: fit on the training split's
    positives, threshold chosen on val's, measured on ``eval_split``'s, in array pixels.

    Args:
        manifest: ``processed.read_manifest`` output (``split``, ``label``, parsed ``boxes``).
        size: the arrays' side (``stats.json``'s ``size``).
    """
    def boxes_of(split: str) -> list[list[list[float]]]:
        rows = manifest[(manifest["split"] == split) & (manifest["label"] == 1)]
        return [[[float(v) for v in b] for b in boxes] for boxes in rows["boxes"] if len(boxes)]

    return image_free_baselines(boxes_of("train"), boxes_of(eval_split), boxes_of("val") or None,
                                size)


def manifest_labels(manifest: pd.DataFrame) -> pd.DataFrame:
    """A processed manifest's boxes as RSNA-layout label rows (array pixels), one per box."""
    rows = [{"patientId": pid, "x": b[0], "y": b[1], "width": b[2], "height": b[3], "Target": 1}
            for pid, boxes in zip(manifest["patientId"], manifest["boxes"], strict=True)
            for b in boxes]
    return pd.DataFrame(rows, columns=["patientId", "x", "y", "width", "height", "Target"])


def dataset_geometry(processed: str | Path | None = None,
                     out_dir: str | Path | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The box geometry and image-free baselines of a processed dataset, saved and returned.

    Writes ``<out_dir>/box_geometry.csv`` (:func:`compare_with_rsna` of the dataset's boxes,
    all splits) and ``<out_dir>/image_free_baselines.json`` (:func:`split_baselines` on the test
    split, beside :data:`RSNA_BASELINES_224`, with the data source and provenance).

    Args:
        processed: the processed folder (default ``data/Processed``).
        out_dir: where to write (default ``metrics/``).

    Returns:
        ``(geometry table, baselines document)``.
    """
    processed = Path(processed) if processed is not None else paths.processed_dir()
    out_dir = paths.ensure_writable_dir(out_dir if out_dir is not None else paths.metrics_dir())
    stats = read_stats(processed)
    manifest = read_manifest(processed)
    size = int(stats.get("size") or 224)
    geometry = box_geometry(manifest_labels(manifest), image_size=size)
    table = compare_with_rsna(geometry, COLUMNS)
    table.attrs.update(geometry.attrs)
    doc = {"data_source": stats.get("source"), "processed": str(processed), "size": size,
           "test": split_baselines(manifest, size), "rsna_real": dict(RSNA_BASELINES_224),
           "left_half_share": geometry.attrs["left_half_share"],
           "rsna_left_half_share": RSNA_LEFT_HALF_SHARE, "provenance": provenance()}
    write_frame_csv(out_dir / "box_geometry.csv", table.rename_axis("quantity"))
    write_json_atomic(out_dir / "image_free_baselines.json", doc)
    return table, doc
