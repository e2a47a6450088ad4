"""A Kaggle submission for the RSNA test images: CAM boxes mapped back to the original pixels.

:func:`write_submission` reads every DICOM of ``stage_2_test_images/`` the way preprocessing
does (:func:`pneumocam.dicom.load_dicom_resized`), computes the maps, turns them into boxes with
the detection threshold chosen on validation (:func:`pneumocam.detection.detect_boxes`), maps
the boxes back to each DICOM's own pixel grid (1024 px for RSNA) and writes
``patientId,PredictionString``. :func:`find_test_images` finds that folder beside a data
source's labels.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import paths, rsna
from .atomic import atomic_write
from .cam import compute_cams
from .detection import detect_boxes, prediction_string
from .errors import DicomReadError
from .predict import LoadedRun, normalize_images, read_batches, read_error_message
from .split_maps import to_numpy


def write_submission(run: LoadedRun, folder: Path, method: str, batch_size: int,
                     box_threshold: float, out_path: Path) -> dict[str, Any]:
    """Kaggle ``patientId,PredictionString`` for every DICOM in ``folder`` (original pixels).

    Each DICOM is read like preprocessing does (:func:`pneumocam.dicom.load_dicom_resized`), its
    boxes mapped back to the original pixel grid (1024 px for RSNA). An unreadable file gets an
    empty prediction and is listed in the result.

    Returns:
        ``{"path", "n_images", "n_failed", "failed": the first 20 {"file", "reason"}}``.
    """
    # imported here: pydicom costs a noticeable import time, and only a submission needs it
    from .dicom import load_dicom_resized

    items = list(rsna.list_dicoms(folder).items())
    failed: list[dict[str, str]] = []
    rows: list[tuple[str, str]] = []
    step = max(1, int(batch_size))
    for batch in read_batches([path for _, path in items], run.size, step, read=load_dicom_resized):
        for i, error in batch.failed:
            reason = error.reason if isinstance(error, DicomReadError) else \
                read_error_message(items[i][1], error)
            failed.append({"file": str(items[i][1]), "reason": reason})
            rows.append((items[i][0], ""))
        if not batch.indices:
            continue
        res = compute_cams(run.model, normalize_images(batch.images, run.mean, run.std),
                           method=method, batch_size=step)
        preds = detect_boxes(to_numpy(res.normalized), to_numpy(res.probs), box_threshold,
                             run.threshold)
        for i, rad, pred in zip(batch.indices, batch.radiographs, preds, strict=True):
            geo = rad.geometry
            if geo is not None and pred:
                original = [clip_box(b, geo.width, geo.height)
                            for b in geo.boxes_to_original([box for _, box in pred])]
                pred = [(conf, box) for (conf, _), box in zip(pred, original, strict=True)
                        if box[2] > 0 and box[3] > 0]
            rows.append((items[i][0], prediction_string(pred)))
    with atomic_write(out_path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patientId", "PredictionString"])
        writer.writerows(sorted(rows))
    return {"path": str(out_path), "n_images": len(items), "n_failed": len(failed),
            "failed": failed[:20]}


def clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """``[x, y, w, h]`` cut to a ``width`` x ``height`` image (a region in the square's padding
    maps outside it); a box wholly outside gets zero width or height."""
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    return [x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)]


def find_test_images(source: Mapping[str, Any]) -> Path | None:
    """``<source path>/stage_2_test_images`` of a data source record (``{"kind", "path"}``,
    relative paths from the repository root) when that folder exists, else None."""
    raw = source.get("path") if isinstance(source, Mapping) else None
    if not raw:
        return None
    root = Path(str(raw))
    root = root if root.is_absolute() else paths.repo_root() / root
    folder = root / rsna.TEST_IMAGES_DIR
    return folder if folder.is_dir() else None
