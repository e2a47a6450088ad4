"""The CAM gallery's content: every image of each interpreted split, its map, and its numbers.

For each interpretation on disk (``metrics/<tag>_localization.json``; ``<tag>`` is the run name,
or what another writer put before ``_localization.json``), :func:`find_interpretations` reads

- the JSON: run, method, split, the operating threshold, the data folder, demo or not;
- ``metrics/<tag>_maps_index.csv`` (every image of the split: patientId, label, probability)
  and ``metrics/<tag>_maps.npy`` (the raw maps, float32 N x H x W, memory-mapped), written by
  ``interpret.py --save-maps``; without them the gallery names that command;
- ``metrics/<tag>_localization.csv`` (the positives with boxes: pointing hit, mass in boxes,
  IoU, RSNA score, the peak).

:func:`write_gallery_assets` draws, in batches (:mod:`pneumocam.thumbnails`), one thumbnail and
one full-size overlay per image and run, and one plain radiograph per patient, and returns the
JSON-ready records the gallery page embeds. Only the patientId, the label and class, and the
view, sex and age of the manifest reach the page: nothing else from the DICOM headers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .processed import DataSource, read_manifest
from .selection import GRID_CELLS
from .thumbnails import encode_jpeg, feature_peaks, map_levels, render_overlays

THUMB_SIZE = 160  #: gallery thumbnails, px (square)
FULL_MIN_SIZE = 224  #: detail overlays: the array's size, small arrays upscaled to this
THUMB_QUALITY = 80
FULL_QUALITY = 88
CHUNK = 256  #: images per batch (bounded memory whatever the split's size)
SAVE_MAPS_COMMAND = "python scripts/interpret.py --weights weights/{run}/best.pth --method {method} --save-maps"


@dataclass
class Interpretation:
    """One interpreted (run, method, split): what the gallery shows for it.

    Attributes:
        tag: the metrics files' prefix (``metrics/<tag>_localization.json``).
        run, method, split: from the JSON. threshold: the operating threshold (probability).
        demo: made from the synthetic demo data (or an unknown source).
        data_dir: the processed folder the maps were computed on.
        index: ``<tag>_maps_index.csv`` (patientId, label, probability) or None when the maps
            were not saved. maps_path: ``<tag>_maps.npy`` or None.
        per_image: ``<tag>_localization.csv`` (may be empty).
        report: the localization JSON.
    """

    tag: str
    run: str
    method: str
    split: str
    threshold: float
    demo: bool
    data_dir: Path
    index: pd.DataFrame | None
    maps_path: Path | None
    per_image: pd.DataFrame
    report: dict[str, Any] = field(repr=False)

    @property
    def has_maps(self) -> bool:
        return self.index is not None and self.maps_path is not None

    @property
    def save_maps_command(self) -> str:
        return SAVE_MAPS_COMMAND.format(run=self.run, method=self.method)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, dtype={"patientId": str}, keep_default_na=False,
                           na_values=[""])
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def find_interpretations(metrics_dir: Path | None = None,
                         run_order: Sequence[str] = ()) -> list[Interpretation]:
    """Every complete interpretation under ``metrics_dir`` (partial ``--limit`` looks left out).

    Args:
        run_order: runs to list first, in this order; the others follow, sorted.

    Returns:
        Interpretations ordered by run (``run_order`` first), then method.
    """
    mdir = metrics_dir or paths.metrics_dir()
    found = []
    for path in sorted(mdir.glob("*_localization.json")):
        report = _read_json(path)
        if report is None or report.get("limit") is not None or "run" not in report:
            continue
        tag = path.name[: -len("_localization.json")]
        index = _read_csv(mdir / f"{tag}_maps_index.csv")
        maps_path = mdir / f"{tag}_maps.npy"
        per_image = _read_csv(mdir / f"{tag}_localization.csv")
        threshold = (report.get("classification") or {}).get("operating_threshold")
        source = DataSource.from_json(report.get("data_source"))
        data_dir = Path(report.get("data_dir") or paths.processed_dir())
        if not (data_dir / "manifest.csv").is_file():  # moved: the project's own folder
            data_dir = mdir.parent / "data" / "Processed"
        found.append(Interpretation(
            tag=tag, run=str(report["run"]), method=str(report.get("method", "cam")),
            split=str(report.get("split", "test")),
            threshold=float(threshold) if isinstance(threshold, (int, float)) else 0.5,
            demo=bool(report.get("synthetic_demo")) or source.maybe_synthetic,
            data_dir=data_dir,
            index=index if index is not None and maps_path.is_file() else None,
            maps_path=maps_path if maps_path.is_file() and index is not None else None,
            per_image=per_image if per_image is not None else pd.DataFrame(),
            report=report))
    first = {r: i for i, r in enumerate(run_order)}
    return sorted(found, key=lambda x: (first.get(x.run, len(first)), x.run, x.method, x.tag))


def confusion_cell(label: int, prob: float, threshold: float) -> str:
    """``tp``/``fp``/``fn``/``tn`` of one image at ``threshold`` (positive when prob >= it)."""
    pred = prob >= threshold
    return ("tp" if pred else "fn") if int(label) == 1 else ("fp" if pred else "tn")


def _slug(text: str, taken: set[str]) -> str:
    """A folder name from ``text`` (letters, digits, ``._-``), unique within ``taken``."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "run"
    slug, k = base, 1
    while slug in taken:
        k += 1
        slug = f"{base}-{k}"
    taken.add(slug)
    return slug


def _patient_key(pid: str) -> str:
    """A file-name-safe, stable key for a patientId (which may hold any character)."""
    return hashlib.sha1(pid.encode("utf-8")).hexdigest()[:16]


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _split_rows(data_dir: Path, split: str, manifests: dict[Path, pd.DataFrame]) -> pd.DataFrame:
    """The manifest rows of ``split`` in the order interpretation read them."""
    if data_dir not in manifests:
        manifests[data_dir] = read_manifest(data_dir)
    m = manifests[data_dir]
    return m[m["split"] == split].reset_index(drop=True)


def _boxes(text: Any) -> list[list[float]]:
    if isinstance(text, list):
        return text
    try:
        boxes = json.loads(text) if isinstance(text, str) and text else []
    except ValueError:
        return []
    return [[float(v) for v in b] for b in boxes]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # inside the site's temporary folder: the folder is renamed whole


def _load_arrays(data_dir: Path, files: Iterable[str]) -> np.ndarray:
    return np.stack([np.load(data_dir / f) for f in files])


def write_gallery_assets(interps: Sequence[Interpretation], site: Path,
                         thumb_size: int = THUMB_SIZE) -> dict[str, Any]:
    """Draw every interpretation's pictures under ``site/img/`` and return the gallery data.

    Args:
        interps: from :func:`find_interpretations`.
        site: the report folder being written (``images/report`` in its temporary place); the
            returned paths are relative to it.

    Returns:
        ``{"images": [...], "runs": [...], "entries": {slug: [...]}}``: one ``images`` record
        per patient (``id``, ``label``, ``cls``, ``view``, ``sex``, ``age``, ``boxes``, ``xr``
        the radiograph's path), one ``runs`` record per interpretation (``key``, ``tag``,
        ``run``, ``method``, ``split``, ``threshold``, ``n``, ``has_maps``, ``command``,
        ``cells``: counts per confusion cell), and per interpretation one entry per image
        (``i`` its ``images`` index, ``p`` probability, ``c`` cell, ``h`` pointing hit
        true/false/None, ``iou``, ``mass``, ``rsna``, ``t`` thumbnail and ``f`` overlay paths).

    Raises:
        ProcessedDataError: the processed folder an interpretation names is gone.
    """
    images: list[dict[str, Any]] = []
    by_pid: dict[str, int] = {}
    runs, entries = [], {}
    manifests: dict[Path, pd.DataFrame] = {}
    taken: set[str] = {"xr"}
    for it in interps:
        key = _slug(it.tag, taken)
        record: dict[str, Any] = {
            "key": key, "tag": it.tag, "run": it.run, "method": it.method, "split": it.split,
            "threshold": it.threshold, "has_maps": it.has_maps, "command": it.save_maps_command,
            "n": 0, "cells": {c: 0 for c in GRID_CELLS}}
        runs.append(record)
        if not it.has_maps:
            continue
        rows = _split_rows(it.data_dir, it.split, manifests)
        index = it.index.reset_index(drop=True)
        if len(index) != len(rows) or list(index["patientId"]) != list(rows["patientId"].astype(str)):
            # the index is the order the maps were written in: align the manifest to it
            rows = rows.set_index(rows["patientId"].astype(str)).loc[index["patientId"]].reset_index(drop=True)
        loc = it.per_image.set_index("patientId") if len(it.per_image) else pd.DataFrame()
        maps = np.load(it.maps_path, mmap_mode="r")
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), CHUNK):
            part = rows.iloc[start:start + CHUNK]
            arrays = _load_arrays(it.data_dir, part["array_file"])
            raw = np.asarray(maps[start:start + len(part)], np.float32)
            boxes = [_boxes(b) for b in part["boxes"]]
            peaks = feature_peaks(raw)
            pids = part["patientId"].astype(str).tolist()
            for j, pid in enumerate(pids):  # the pointing game's own peak where it was measured
                if pid in loc.index and "peak_x" in loc.columns:
                    py, px = _num(loc.at[pid, "peak_y"]), _num(loc.at[pid, "peak_x"])
                    if py is not None and px is not None:
                        peaks[j] = (py, px)
            norm = map_levels(raw, it.method)
            side = max(FULL_MIN_SIZE, arrays.shape[1])
            thumbs = render_overlays(arrays, norm, boxes, peaks, thumb_size)
            fulls = render_overlays(arrays, norm, boxes, peaks, side)
            new = [j for j, pid in enumerate(pids) if pid not in by_pid]
            plain = render_overlays(arrays[new], None, [[] for _ in new], None, side) if new else []
            for k, j in enumerate(new):
                xr = f"img/xr/{_patient_key(pids[j])}.jpg"
                _write(site / xr, encode_jpeg(plain[k], FULL_QUALITY))
                r = part.iloc[j]
                by_pid[pids[j]] = len(images)
                images.append({"id": pids[j], "label": int(r["label"]), "cls": str(r.get("class") or ""),
                               "view": str(r.get("view_position") or ""), "sex": str(r.get("sex") or ""),
                               "age": _num(r.get("age")), "boxes": boxes[j], "xr": xr})
            for j, pid in enumerate(pids):
                n = start + j
                prob = float(index.at[n, "probability"])
                cell = confusion_cell(int(part.iloc[j]["label"]), prob, it.threshold)
                record["cells"][cell] += 1
                t, f = f"img/{key}/t{n}.jpg", f"img/{key}/f{n}.jpg"
                _write(site / t, encode_jpeg(thumbs[j], THUMB_QUALITY))
                _write(site / f, encode_jpeg(fulls[j], FULL_QUALITY))
                entry = {"i": by_pid[pid], "p": prob, "c": cell, "h": None, "iou": None,
                         "mass": None, "rsna": None, "t": t, "f": f}
                if pid in loc.index:
                    row = loc.loc[pid]
                    hit = _num(row.get("pointing_hit"))
                    entry.update(h=None if hit is None else bool(hit), iou=_num(row.get("iou")),
                                 mass=_num(row.get("mass_in_boxes")), rsna=_num(row.get("rsna_score")))
                out.append(entry)
        record["n"] = len(out)
        entries[key] = out
    return {"images": images, "runs": runs, "entries": entries}


def gallery_counts(data: Mapping[str, Any], key: str) -> dict[str, int]:
    """How many images each filter of one interpretation shows (what the page must show):
    ``all``, each confusion cell, ``pos``/``neg`` (true label), ``AP``/``PA``, ``hit``/``miss``."""
    es, imgs = data["entries"].get(key, []), data["images"]
    counts = {"all": len(es), **{c: sum(e["c"] == c for e in es) for c in GRID_CELLS}}
    counts["pos"] = sum(imgs[e["i"]]["label"] == 1 for e in es)
    counts["neg"] = counts["all"] - counts["pos"]
    for v in ("AP", "PA"):
        counts[v] = sum(imgs[e["i"]]["view"] == v for e in es)
    counts["hit"] = sum(e["h"] is True for e in es)
    counts["miss"] = sum(e["h"] is False for e in es)
    return counts
