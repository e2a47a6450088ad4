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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .errors import PneumocamError, ProcessedDataError
from .processed import read_manifest
from .provenance import read_json_object
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
        report = read_json_object(path)
        if report is None or report.get("limit") is not None or "run" not in report:
            continue
        tag = path.name[: -len("_localization.json")]
        index = _read_csv(mdir / f"{tag}_maps_index.csv")
        maps_path = mdir / f"{tag}_maps.npy"
        per_image = _read_csv(mdir / f"{tag}_localization.csv")
        threshold = (report.get("classification") or {}).get("operating_threshold")
        data_dir = Path(report.get("data_dir") or paths.processed_dir())
        if not (data_dir / "manifest.csv").is_file():  # moved: the project's own folder
            data_dir = mdir.parent / "data" / "Processed"
        found.append(Interpretation(
            tag=tag, run=str(report["run"]), method=str(report.get("method", "cam")),
            split=str(report.get("split", "test")),
            threshold=float(threshold) if isinstance(threshold, (int, float)) else 0.5,
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


def patient_key(pid: str) -> str:
    """A file-name-safe, stable key for a patientId (which may hold any character)."""
    return hashlib.sha1(pid.encode("utf-8")).hexdigest()[:16]


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def parse_boxes(text: Any) -> list[list[float]]:
    """A manifest's ``boxes`` cell (JSON ``[[x, y, w, h], ...]``) as floats; [] when empty."""
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
    """uint8 (N, H, W) arrays of a processed folder; a missing one names the file and the fix."""
    try:
        return np.stack([np.load(data_dir / f) for f in files])
    except (OSError, ValueError) as exc:
        raise ProcessedDataError(f"{data_dir}: cannot read the arrays the maps were made from "
                                 f"({exc}); rerun preprocessing, then interpretation.") from None


def _aligned_rows(it: Interpretation, manifests: dict[Path, pd.DataFrame]) -> pd.DataFrame:
    """The manifest rows of the maps' images, in the maps' order (the index's).

    Raises:
        ProcessedDataError: the manifest is gone, lacks an indexed image, or the maps file does
            not hold one map per indexed image (names the command that rewrites them).
    """
    index = it.index
    if it.data_dir not in manifests:
        manifests[it.data_dir] = read_manifest(it.data_dir)
    rows = manifests[it.data_dir]
    rows = rows[rows["split"] == it.split]
    rows = rows.set_index(rows["patientId"].astype(str))  # the column stays: the page shows it
    missing = set(index["patientId"]) - set(rows.index)
    n_maps = np.load(it.maps_path, mmap_mode="r").shape[0]
    if missing or n_maps != len(index):
        raise ProcessedDataError(
            f"metrics/{it.tag}_maps.npy ({n_maps} maps) and its index ({len(index)} images, "
            f"{len(missing)} not in {it.data_dir}/manifest.csv) do not match; rewrite them with "
            f"{it.save_maps_command}")
    return rows.loc[index["patientId"]].reset_index(drop=True)


def _peaks(raw: np.ndarray, pids: Sequence[str], loc: pd.DataFrame) -> np.ndarray:
    """Each map's peak (y, x): the pointing game's own (``peak_y``, ``peak_x`` of the
    localization CSV) where it was measured, else :func:`feature_peaks`."""
    peaks = feature_peaks(raw)
    if "peak_x" in loc.columns:
        for j, pid in enumerate(pids):
            if pid in loc.index:
                py, px = _num(loc.at[pid, "peak_y"]), _num(loc.at[pid, "peak_x"])
                if py is not None and px is not None:
                    peaks[j] = (py, px)
    return peaks


def _image_record(row: pd.Series, boxes: list, xr: str) -> dict[str, Any]:
    """What the page shows of one image: patientId, label and class, view, sex, age, boxes."""
    return {"id": str(row["patientId"]), "label": int(row["label"]),
            "cls": str(row.get("class") or ""), "view": str(row.get("view_position") or ""),
            "sex": str(row.get("sex") or ""), "age": _num(row.get("age")), "boxes": boxes,
            "xr": xr}


def _entry(n: int, prob: float, cell: str, image: int, key: str, loc: pd.DataFrame,
           pid: str) -> dict[str, Any]:
    """One image of one interpretation: probability, cell, localization numbers, picture paths."""
    entry = {"i": image, "p": prob, "c": cell, "h": None, "iou": None, "mass": None,
             "rsna": None, "t": f"img/{key}/t{n}.jpg", "f": f"img/{key}/f{n}.jpg"}
    if pid in loc.index:
        row = loc.loc[pid]
        hit = _num(row.get("pointing_hit"))
        entry.update(h=None if hit is None else bool(hit), iou=_num(row.get("iou")),
                     mass=_num(row.get("mass_in_boxes")), rsna=_num(row.get("rsna_score")))
    return entry


def write_gallery_assets(interps: Sequence[Interpretation], site: Path,
                         thumb_size: int = THUMB_SIZE) -> dict[str, Any]:
    """Draw every interpretation's pictures under ``site/img/`` and return the gallery data.

    Args:
        interps: from :func:`find_interpretations`.
        site: the report folder being written (``images/report`` in its temporary place); the
            returned paths are relative to it.

    Returns:
        ``{"images": [...], "runs": [...], "entries": {key: [...]}}``: one ``images`` record
        per patient (``id``, ``label``, ``cls``, ``view``, ``sex``, ``age``, ``boxes``, ``xr``
        the radiograph's path), one ``runs`` record per interpretation (``key``, ``tag``,
        ``run``, ``method``, ``split``, ``threshold``, ``n``, ``has_maps``, ``command``,
        ``problem``: why its maps cannot be shown, or None), and per interpretation one entry
        per image (``i`` its ``images`` index, ``p`` probability, ``c`` confusion cell, ``h``
        pointing hit true/false/None, ``iou``, ``mass``, ``rsna``, ``t`` thumbnail and ``f``
        overlay paths). An interpretation whose files do not fit together gets a ``problem``
        and no entries; the others are still drawn.
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
            "problem": None, "n": 0}
        runs.append(record)
        if not it.has_maps:
            continue
        try:
            rows = _aligned_rows(it, manifests)
        except PneumocamError as exc:
            record.update(has_maps=False, problem=str(exc))
            continue
        probs = it.index["probability"].to_numpy(dtype=float)
        loc = it.per_image.set_index("patientId") if len(it.per_image) else pd.DataFrame()
        maps = np.load(it.maps_path, mmap_mode="r")
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), CHUNK):  # a bounded batch: any split fits in memory
            part = rows.iloc[start:start + CHUNK]
            pids = part["patientId"].astype(str).tolist()
            arrays = _load_arrays(it.data_dir, part["array_file"])
            raw = np.asarray(maps[start:start + len(part)], np.float32)
            boxes = [parse_boxes(b) for b in part["boxes"]]
            levels, peaks = map_levels(raw, it.method), _peaks(raw, pids, loc)
            side = max(FULL_MIN_SIZE, arrays.shape[1])
            thumbs = render_overlays(arrays, levels, boxes, peaks, thumb_size)
            fulls = render_overlays(arrays, levels, boxes, peaks, side)
            new = [j for j, pid in enumerate(pids) if pid not in by_pid]  # radiographs: once
            plain = render_overlays(arrays[new], None, [[]] * len(new), None, side)
            for k, j in enumerate(new):
                xr = f"img/xr/{patient_key(pids[j])}.jpg"
                _write(site / xr, encode_jpeg(plain[k], FULL_QUALITY))
                by_pid[pids[j]] = len(images)
                images.append(_image_record(part.iloc[j], boxes[j], xr))
            for j, pid in enumerate(pids):
                n = start + j
                cell = confusion_cell(int(part.iloc[j]["label"]), probs[n], it.threshold)
                entry = _entry(n, float(probs[n]), cell, by_pid[pid], key, loc, pid)
                _write(site / entry["t"], encode_jpeg(thumbs[j], THUMB_QUALITY))
                _write(site / entry["f"], encode_jpeg(fulls[j], FULL_QUALITY))
                out.append(entry)
        record["n"] = len(out)
        entries[key] = out
    return {"images": images, "runs": runs, "entries": entries}
