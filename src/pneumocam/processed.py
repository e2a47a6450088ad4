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
``source`` (``{"kind": "demo" | "rsna" | "other", "path": ..., "labels_sha256": ...}``),
``split_fingerprint`` (see :func:`split_fingerprint`), ``counts`` (``{split: {"0": n, "1": n}}``),
``parameters``, ``provenance``.

Which data a run was trained on: a folder's :class:`DataIdentity` is its source kind, the hash of
its labels file and its split fingerprint; the path is information only (a moved repository keeps
working). Training writes it to ``weights/<run>/config.json`` as ``data_identity``, beside
``data_dir`` (the folder, relative to the repository root when inside it: the one documented
place every reader takes through :func:`run_data_dir`). Every stage that uses a trained run calls
:func:`check_run_data` on the folder it reads and refuses another one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .errors import DataSourceError, ProcessedDataError

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


# --------------------------------------------------------------------------- data identity

FINGERPRINT_HEX = 16
#: Keys of ``weights/<run>/config.json`` that say which data the run was trained on.
RUN_DATA_DIR_KEY = "data_dir"
RUN_DATA_IDENTITY_KEY = "data_identity"


def split_fingerprint(manifest: pd.DataFrame) -> str:
    """Which patient is in which split, in 16 hex digits.

    The first 16 hex digits of the sha256 of the sorted ``patientId,split`` lines (joined by
    newlines) of ``manifest``: two folders share it exactly when they put the same patients in the
    same splits, whatever the row order, the labels' path or the array size.
    """
    lines = sorted(f"{p},{s}" for p, s in zip(manifest["patientId"].astype(str),
                                              manifest["split"].astype(str), strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:FINGERPRINT_HEX]


SOURCE_KINDS = ("demo", "rsna", "other")  #: what stats.json's source ``kind`` may hold
UNKNOWN_KIND = "unknown"  #: no record (a run without config.json and stats.json)


@dataclass(frozen=True)
class DataSource:
    """Where a processed folder's images came from: ``stats.json``'s ``source`` block, typed.

    The JSON form is the block itself (``{"kind", "path", "labels_sha256", ...}``, written by
    preprocessing); :meth:`to_json` gives it back unchanged.

    Attributes:
        kind: ``demo`` (the synthetic generator's files only), ``rsna`` (no synthetic file),
            ``other`` (a mixture), or ``unknown`` (nothing recorded).
        path: the source folder as recorded (relative to the repository root when under it).
        record: the whole recorded block.
    """

    kind: str = UNKNOWN_KIND
    path: str | None = None
    record: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, block: Any) -> DataSource:
        """Read a ``source`` block; anything without a known ``kind`` is ``unknown``."""
        if not isinstance(block, Mapping) or block.get("kind") not in SOURCE_KINDS:
            return cls(record=dict(block) if isinstance(block, Mapping) else None)
        path = block.get("path")
        return cls(kind=str(block["kind"]), path=str(path) if path else None, record=dict(block))

    def to_json(self) -> dict[str, Any]:
        return dict(self.record) if self.record else {"kind": self.kind, "path": self.path}

    @property
    def known(self) -> bool:
        return self.kind in SOURCE_KINDS

    @property
    def is_demo(self) -> bool:
        """The synthetic demo dataset, and nothing else."""
        return self.kind == "demo"

    @property
    def maybe_synthetic(self) -> bool:
        """True unless the images are known to be real files only (``rsna``): what decides the
        "synthetic demo data" stamp on figures, so an unknown or mixed source is stamped too."""
        return self.kind != "rsna"


@dataclass(frozen=True)
class DataIdentity:
    """Which data a processed folder holds (or a run was trained on); ``None`` = not recorded.

    Attributes:
        kind: ``demo`` | ``rsna`` | ``other`` (stats.json's source kind).
        labels_sha256: sha256 of the labels CSV the folder was made from.
        split_fingerprint: :func:`split_fingerprint` of the folder's manifest.
    """

    kind: str | None = None
    labels_sha256: str | None = None
    split_fingerprint: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DataIdentity:
        d = d if isinstance(d, Mapping) else {}
        return cls(*(str(d[k]) if d.get(k) else None
                     for k in ("kind", "labels_sha256", "split_fingerprint")))

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @property
    def known(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def differences(self, other: DataIdentity) -> list[str]:
        """``name: mine vs other's`` for every field both record and that differs."""
        return [f"{k} {a[:12]} vs {b[:12]}" for k, a, b in
                ((k, getattr(self, k), getattr(other, k)) for k in asdict(self))
                if a is not None and b is not None and a != b]

    def describe(self) -> str:
        """``demo data (labels 1a2b3c4d5e6f, split fingerprint 0123456789abcdef)``."""
        parts = []
        if self.labels_sha256:
            parts.append(f"labels {self.labels_sha256[:12]}")
        if self.split_fingerprint:
            parts.append(f"split fingerprint {self.split_fingerprint}")
        return f"{self.kind or 'unknown'} data" + (f" ({', '.join(parts)})" if parts else "")


def _manifest_splits(processed: Path) -> pd.DataFrame:
    """Only ``patientId`` and ``split`` of the manifest (cheap on 26k rows)."""
    path = processed / MANIFEST_NAME
    if not path.is_file():
        raise ProcessedDataError(f"{path} not found: {processed} holds no processed data. {_FIX}")
    try:
        return pd.read_csv(path, usecols=["patientId", "split"], dtype=str, keep_default_na=False)
    except ValueError as exc:
        raise ProcessedDataError(f"{path}: no patientId/split columns ({exc}). Re-run "
                                 "preprocessing with --overwrite.") from exc


def data_identity(processed: str | Path, stats: Mapping[str, Any] | None = None) -> DataIdentity:
    """The :class:`DataIdentity` of a processed folder: from ``stats.json`` (its ``source`` and
    ``split_fingerprint``); the fingerprint is computed from the manifest when stats.json is
    older than it."""
    processed = Path(processed)
    stats = read_stats(processed) if stats is None else stats
    source = stats.get("source") if isinstance(stats.get("source"), Mapping) else {}
    fingerprint = stats.get("split_fingerprint") or split_fingerprint(_manifest_splits(processed))
    return DataIdentity(kind=source.get("kind"), labels_sha256=source.get("labels_sha256"),
                        split_fingerprint=str(fingerprint))


def record_path(folder: str | Path) -> str:
    """How a folder is written into a run's record: relative to the repository root when inside
    it (so a moved repository still finds it), else absolute."""
    folder = Path(folder).expanduser().resolve()
    try:
        return folder.relative_to(paths.repo_root().resolve()).as_posix()
    except ValueError:
        return str(folder)


def run_data_dir(config: Mapping[str, Any]) -> Path | None:
    """The processed folder a run was trained on, from its ``config.json`` dict.

    The documented place is the top-level ``data_dir`` (relative paths are under the repository
    root); configs written before it are read from ``settings``/``arguments``. None when absent.
    """
    value = config.get(RUN_DATA_DIR_KEY)
    for block in ("settings", "arguments"):
        inner = config.get(block)
        if not value and isinstance(inner, Mapping):
            value = inner.get("data_dir")
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else paths.repo_root() / path


def run_data_identity(config: Mapping[str, Any]) -> DataIdentity:
    """The :class:`DataIdentity` a run recorded in its ``config.json`` dict (``data_identity``);
    older configs give what their ``data_source`` says (kind, labels hash, no fingerprint)."""
    if isinstance(config.get(RUN_DATA_IDENTITY_KEY), Mapping):
        return DataIdentity.from_dict(config[RUN_DATA_IDENTITY_KEY])
    source = config.get("data_source")
    if not isinstance(source, Mapping):
        stats = config.get("stats")
        source = stats.get("source") if isinstance(stats, Mapping) else None
    return DataIdentity.from_dict(source)


def check_run_data(config: Mapping[str, Any], processed: str | Path, run: str | Path,
                   identity: DataIdentity | None = None) -> DataIdentity:
    """Refuse to use a run on data other than the data it was trained on.

    Args:
        config: the run's ``config.json`` dict ({} when absent: nothing to check).
        processed: the folder about to be read.
        run: what names the run in the message (its weights file or ``weights/<run>``).
        identity: the folder's identity when already known.

    Returns:
        The folder's :class:`DataIdentity`.

    Raises:
        DataSourceError: source kind, labels or split differ; names both and the fix.
    """
    processed = Path(processed)
    here = identity or data_identity(processed)
    trained = run_data_identity(config)
    diffs = trained.differences(here)
    if diffs:
        trained_dir = run_data_dir(config)
        where = f" ({trained_dir})" if trained_dir else ""
        raise DataSourceError(
            f"{run} was trained on {trained.describe()}{where} but {processed} holds "
            f"{here.describe()} ({'; '.join(diffs)}); using it there would mix data. Pass "
            f"--data-dir {trained_dir or '<the folder the run was trained on>'}, or retrain the "
            f"run on {processed}.")
    return here
