"""The ``data/Processed`` contract, shared by the writer (preprocess) and the readers (train, cam).

Layout::

    <processed>/
        train/{0,1}/<patientId>.npy   uint8 (size, size), 0 = black (air), 255 = white (bone)
        val/{0,1}/<patientId>.npy
        test/{0,1}/<patientId>.npy
        manifest.csv                  one row per written image (columns: MANIFEST_COLUMNS)
        stats.json                    train mean/std on the [0,1] scale, counts, source, params
        skipped.csv                   file, reason (DICOMs that could not be read)

``manifest.csv`` columns:

- ``patientId``: RSNA patient id (one image per patient)
- ``split``: ``train`` | ``val`` | ``test``
- ``label``: 0/1 (RSNA ``Target``)
- ``class``: RSNA detailed class (``Lung Opacity``, ``No Lung Opacity / Not Normal``,
  ``Normal``) or empty when the class file is absent
- ``view_position``: ``AP`` | ``PA`` | empty; ``sex``: ``M`` | ``F`` | empty; ``age``: int or empty
- ``boxes``: JSON list of ``[x, y, width, height]`` in output pixels (after squaring and resizing)
- ``source_file``: the DICOM it came from; ``array_file``: path of the ``.npy`` relative to the
  processed folder

``stats.json`` top-level keys: ``mean``, ``std`` (floats, train split, [0,1] scale), ``size``,
``source`` (``{"kind": "demo" | "rsna" | "other", "path": ...}``), ``counts``
(``{split: {"0": n, "1": n}}``), ``parameters``, ``provenance``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ProcessedDataError

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.csv"
STATS_NAME = "stats.json"
SKIPPED_NAME = "skipped.csv"
MANIFEST_COLUMNS = (
    "patientId", "split", "label", "class", "view_position", "sex", "age",
    "boxes", "source_file", "array_file",
)
_FIX = "Run `python scripts/preprocess.py` (or `python scripts/train_balanced.py`, which prepares the demo data)."


def array_relpath(split: str, label: int, patient_id: str) -> str:
    """Relative path of one image's array: ``<split>/<label>/<patientId>.npy``."""
    return f"{split}/{int(label)}/{patient_id}.npy"


def read_stats(processed: str | Path) -> dict[str, Any]:
    """``stats.json`` as a dict; :class:`ProcessedDataError` when missing or unreadable."""
    path = Path(processed) / STATS_NAME
    if not path.is_file():
        raise ProcessedDataError(f"{path} not found: {Path(processed)} holds no processed data. {_FIX}")
    try:
        stats = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProcessedDataError(f"{path}: not valid JSON ({exc}). Re-run preprocessing with --overwrite.") from exc
    for key in ("mean", "std"):
        if not isinstance(stats.get(key), (int, float)):
            raise ProcessedDataError(f"{path}: no numeric '{key}'. Re-run preprocessing with --overwrite.")
    return stats


def read_manifest(processed: str | Path) -> pd.DataFrame:
    """``manifest.csv`` with ``boxes`` parsed to lists and ``label`` as int."""
    path = Path(processed) / MANIFEST_NAME
    if not path.is_file():
        raise ProcessedDataError(f"{path} not found: {Path(processed)} holds no processed data. {_FIX}")
    df = pd.read_csv(path, dtype={"patientId": str, "class": str, "view_position": str, "sex": str},
                     keep_default_na=False)
    missing = [c for c in ("patientId", "split", "label", "boxes", "array_file") if c not in df.columns]
    if missing:
        raise ProcessedDataError(f"{path}: missing columns {missing}. Re-run preprocessing with --overwrite.")
    if df.empty:
        raise ProcessedDataError(f"{path}: no images. {_FIX}")
    df["label"] = df["label"].astype(int)
    df["boxes"] = [json.loads(b) if b else [] for b in df["boxes"]]
    return df


@dataclass
class SplitArrays:
    """One split held in memory.

    Attributes:
        images: uint8 array (N, H, W), 0..255, dark lungs.
        labels: int64 array (N,), 0/1.
        manifest: the split's manifest rows, in the same order (index reset).
    """

    images: np.ndarray
    labels: np.ndarray
    manifest: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)


def load_split(processed: str | Path, split: str, manifest: pd.DataFrame | None = None,
               limit: int | None = None) -> SplitArrays:
    """Load every array of ``split`` (or the first ``limit``, class-stratified order kept).

    Raises:
        ProcessedDataError: unknown split, an empty split, or a listed array that is missing.
    """
    if split not in SPLITS:
        raise ProcessedDataError(f"unknown split {split!r}; expected one of {SPLITS}")
    processed = Path(processed)
    manifest = read_manifest(processed) if manifest is None else manifest
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if limit is not None:
        rows = rows.iloc[:limit].reset_index(drop=True)
    if rows.empty:
        raise ProcessedDataError(f"{processed}: the {split!r} split is empty. {_FIX}")
    return SplitArrays(images=load_arrays(processed, rows["array_file"]),
                       labels=rows["label"].to_numpy(np.int64), manifest=rows)


def load_arrays(processed: str | Path, array_files: Sequence[str]) -> np.ndarray:
    """The manifest's arrays ``array_files`` (relative paths, at least one) as uint8 ``(N, H, W)``.

    Raises:
        ProcessedDataError: a listed array that is missing or unreadable, or not uint8 of the
            first one's shape.
    """
    processed = Path(processed)
    first = None
    images = None
    for i, rel in enumerate(array_files):
        path = processed / rel
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ProcessedDataError(f"{path}: listed in the manifest but unreadable ({exc}). {_FIX}") from exc
        if first is None:
            first = arr.shape
            images = np.empty((len(array_files), *first), dtype=np.uint8)
        if arr.shape != first or arr.dtype != np.uint8:
            raise ProcessedDataError(f"{path}: shape {arr.shape} dtype {arr.dtype}, expected {first} uint8.")
        images[i] = arr
    return images
