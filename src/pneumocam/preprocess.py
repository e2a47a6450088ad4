"""A folder of RSNA-layout DICOMs -> ``data/Processed`` (parallel, resumable, crash-safe).

:func:`run_preprocess` reads the labels (:mod:`pneumocam.rsna`), splits the patients, decodes
every labelled DICOM to a ``size x size`` uint8 array (:func:`pneumocam.dicom.load_dicom_resized`:
dark lungs, padded to a square, ``INTER_AREA``-resized) and writes the contract described in
:mod:`pneumocam.processed`.

Design decisions:

- **Split** by patient, stratified by label, and a function of the label table, the fractions
  and the seed only (:func:`split_patients`): which DICOMs decode plays no part, so a corrupt
  file never moves another patient to a different split.
- **Parallel and flat in memory**: files are decoded in worker processes, chunks of up to 16
  files with at most ``2 * workers`` chunks in flight, results taken in completion order; each
  worker writes its array and returns a few numbers (metadata, output boxes, the image's exact
  integer pixel sum and sum of squares), so the parent never holds the arrays, and the train
  mean/std are exact and independent of completion order. A decoder that crashes its process
  (segfault) costs that one file (``skipped.csv``), not the run.
- **Crash-safe and resumable**: an array is written to ``<name>.<pid>.tmp`` in its final folder
  and renamed (``os.replace``), so a finished ``.npy`` is always whole. A re-run reuses every
  loadable array of the right shape and dtype and re-reads only that DICOM's *header*
  (``stop_before_pixels``: view position, sex, age and the original size the boxes need), so no
  per-image sidecar is kept: the DICOM is the record. ``manifest.csv``, ``skipped.csv`` and
  ``stats.json`` are written at the end, each atomically, so a run killed at any point and
  started again ends with the same outputs as one that was never interrupted (``stats.json``'s
  ``last_run`` and ``provenance`` blocks aside). Stale ``*.tmp`` files are removed at start.
  An advisory lock (``.preprocess.lock``) keeps two runs out of one folder, and workers exit
  when their parent dies.
- **Only its own folder**: preprocessing writes into a missing or empty folder, or one it made
  (its ``stats.json`` or ``preprocess_config.json`` is there); any other folder is refused,
  ``overwrite`` or not, and an output folder it cannot write to is refused before any work.
  ``overwrite`` deletes only what preprocessing wrote: the arrays its manifest lists, its own
  named files (manifest, stats, skipped list, config, temporary files) and its
  ``<split>/<label>/`` and ``<split>/`` folders when they are then empty. A user's file
  anywhere in the folder (even in ``train/0/``) stays.
- **Never mix sources**: ``preprocess_config.json`` (written first) and ``stats.json`` name the
  source: its identity (a hash of the labels file, the number and a hash of the sorted names of
  the training DICOMs, whether the folder is marked as demo data) and, for information, where it
  was (``path``: relative to the repository root when under it, so a moved or copied project
  keeps working; ``abs_path``). A run whose source identity or size/split/decode parameters
  differ from what the folder holds stops with :class:`DataSourceError` unless ``overwrite``.
  The kind is ``demo`` when
  the folder is a demo dataset (``demo_info.json``) and every DICOM carries the generator's
  marker, ``rsna`` when neither does, and ``other`` for a mixture: never ``rsna`` for anything
  synthetic.
- **Bad input never stops the run**: every DICOM that fails is listed in ``skipped.csv`` with its
  reason, as are labels without a DICOM, DICOMs without labels and label rows with an unusable
  box (``file`` is the labels CSV, the reason names the line; see :mod:`pneumocam.rsna` for the
  box rules); duplicate label rows collapsed, boxes clipped and positives left without a box
  are counted in ``stats.json`` (``labels``) and the summary line. A data folder where no
  labelled patient has a DICOM is an error, not an empty run.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import hashlib
import io
import json
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import dicom, paths, rsna
from .atomic import atomic_write
from .errors import (
    ConfigError,
    DataSourceError,
    DicomReadError,
    PneumocamError,
    ProcessedDataError,
)
from .processed import (
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    SKIPPED_NAME,
    SPLITS,
    STATS_NAME,
    DataSource,
    array_relpath,
    read_manifest,
    read_stats,
    split_fingerprint,
)
from .provenance import provenance, write_json_atomic

CONFIG_NAME = "preprocess_config.json"
LOCK_NAME = ".preprocess.lock"
SKIPPED_COLUMNS = ("file", "reason")
REASON_NO_DICOM = f"labelled in {rsna.LABELS_NAME} but no DICOM in {rsna.TRAIN_IMAGES_DIR}/"
REASON_NO_LABEL = f"DICOM without a row in {rsna.LABELS_NAME} (not used)"
# Parameters that change the arrays or the split: a folder holds outputs of one setting only.
_COMPARED_PARAMETERS = ("size", "val_fraction", "test_fraction", "seed", "fast")


@dataclass
class PreprocessConfig:
    """Settings of one preprocessing run (saved as ``preprocess_config.json`` beside the outputs).

    Attributes:
        data_dir: RSNA-layout folder (real or demo). None: ``paths.rsna_dir()`` when it holds the
            real files, else the demo dataset in ``paths.demo_dir()`` (generated on first use).
        out_dir: output folder; None: ``paths.processed_dir()``.
        size: side of the square output arrays in pixels.
        val_fraction, test_fraction: share of patients (per class) in val and test.
        seed: seed of the patient split.
        workers: decoding worker processes; None: ``os.cpu_count()``.
        overwrite: delete what an earlier run wrote in ``out_dir`` (any source; never other
            files) before writing.
        fast: allow the reduced-size JPEG decode (DCT scaling) when it is exact enough.
        n_demo: images in the demo dataset when it has to be generated.
        progress: show a tqdm progress bar.
    """

    data_dir: Path | None = None
    out_dir: Path | None = None
    size: int = 224
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    workers: int | None = None
    overwrite: bool = False
    fast: bool = True
    n_demo: int | None = None
    progress: bool = True

    def parameters(self) -> dict[str, Any]:
        """The settings that shape the outputs (compared before adding to a folder)."""
        return {k: getattr(self, k) for k in _COMPARED_PARAMETERS}


@dataclass
class PreprocessSummary:
    """What one run did.

    Attributes:
        out_dir: the processed folder.
        source: ``{"kind": "demo" | "rsna" | "other", "path": ..., ...}``.
        written: arrays decoded and written by this run.
        reused: valid arrays found from an earlier (interrupted) run and kept.
        skipped: DICOMs that could not be read (listed in ``skipped.csv``).
        missing_dicom: labelled patients without a DICOM.
        unlabeled: DICOMs without a label row.
        seconds: wall time of the run (demo generation excluded).
        images_per_second: ``(written + reused) / seconds``.
        counts: ``{split: {"0": n, "1": n}}`` of the images in the manifest.
        labels: :meth:`pneumocam.rsna.LabelReport.counts` (invalid rows, duplicates collapsed,
            boxes clipped, positives without a box).
    """

    out_dir: Path
    source: dict[str, Any]
    written: int
    skipped: int
    reused: int
    missing_dicom: int
    unlabeled: int
    seconds: float
    images_per_second: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        """Images in the output (written now or kept from before)."""
        return self.written + self.reused

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        kind = self.source.get("kind", "?")
        tag = " [SYNTHETIC DEMO DATA]" if DataSource.from_json(self.source).is_demo else ""
        return (
            f"preprocess: {self.n_images} images in {self.out_dir} ({self.written} written, "
            f"{self.reused} reused), {self.skipped} unreadable, {self.missing_dicom} labels "
            f"without DICOM, {self.unlabeled} DICOMs without label{self._label_note()}; "
            f"source {kind} "
            f"{self.source.get('path')}{tag}; {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s)"
        )

    def _label_note(self) -> str:
        c = self.labels
        if not any(c.values()):
            return ""
        return (f", label rows: {c.get('invalid_rows', 0)} with an unusable box (ignored), "
                f"{c.get('duplicate_rows', 0)} duplicates collapsed, {c.get('clipped_boxes', 0)} "
                f"boxes clipped, {c.get('positives_without_box', 0)} positives without a box")


# ----------------------------------------------------------------------------- the split


def _hash_key(seed: int, patient_id: str) -> str:
    return hashlib.blake2b(f"{seed}:{patient_id}".encode(), digest_size=8).hexdigest()


def split_patients(labels: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.1,
                   seed: int = 0) -> pd.DataFrame:
    """Assign every patient to train/val/test, stratified by ``Target``, reproducibly.

    Within each class the patients are ordered by a seeded hash of their id (independent of the
    table's row order and of numpy's RNG) and the first ``round(n * test_fraction)`` go to test,
    the next ``round(n * val_fraction)`` to val, the rest to train.

    Args:
        labels: :func:`pneumocam.rsna.read_labels` output (``patientId``, ``Target``).
        val_fraction, test_fraction: shares in [0, 1) with a sum below 1.
        seed: changes the assignment.

    Returns:
        DataFrame with ``patientId``, ``Target``, ``split`` and ``order`` (float in (0, 1): sorting
        a split's rows by it interleaves the classes, so any prefix is class-stratified), sorted
        by split then order.
    """
    _check_fractions(val_fraction, test_fraction)
    parts = []
    for target, group in labels.groupby("Target", sort=True):
        ids = sorted(group["patientId"].astype(str), key=lambda p: (_hash_key(seed, p), p))
        n = len(ids)
        n_test = int(np.floor(n * test_fraction + 0.5))
        n_val = min(int(np.floor(n * val_fraction + 0.5)), n - n_test)
        bounds = {"test": (0, n_test), "val": (n_test, n_test + n_val), "train": (n_test + n_val, n)}
        for split, (lo, hi) in bounds.items():
            m = hi - lo
            parts.append(pd.DataFrame({
                "patientId": ids[lo:hi], "Target": int(target), "split": split,
                "order": (np.arange(m) + 0.5) / max(m, 1),
            }))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["patientId", "Target", "split", "order"])
    out["_s"] = out["split"].map({s: i for i, s in enumerate(SPLITS)})
    out = out.sort_values(["_s", "order", "Target", "patientId"], kind="stable")
    return out.drop(columns="_s").reset_index(drop=True)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction}: each must be in "
            f"[0, 1) and their sum below 1 (the rest is the training split)."
        )


# ----------------------------------------------------------------------------- data source


DEMO_BANNER = """\
{rule}
  SYNTHETIC DEMO DATA -- not the RSNA dataset
  {what}
  These radiographs are generated; results on them say nothing about pneumonia.
  For real results download the RSNA Pneumonia Detection Challenge files into
  {rsna}/ (see the README) and run with --overwrite.
{rule}"""


def demo_banner(what: str) -> str:
    """The loud notice printed whenever demo data is generated or used."""
    return DEMO_BANNER.format(rule="=" * 78, what=what, rsna=paths.rsna_dir())


def _demo():
    # Imported lazily: the demo generator is only needed when no data folder is given.
    from . import demo
    return demo


def resolve_data_dir(data_dir: str | Path | None = None, n_demo: int | None = None,
                     workers: int | None = None, progress: bool = True) -> Path:
    """The folder to preprocess.

    An explicit ``data_dir`` must exist. Without one: ``paths.rsna_dir()`` when it holds the real
    labels CSV and images folder, else the demo dataset in ``paths.demo_dir()``, generated on
    first use with ``n_demo`` images (default ``DEMO_DEFAULT_N``) under a loud banner.

    Raises:
        DataSourceError: an explicit ``data_dir`` that is not a folder.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataSourceError(
                f"--data-dir {path} does not exist (or is not a folder). Point it at an RSNA-layout "
                f"folder, or leave it out to use {paths.rsna_dir()} or the demo dataset.\n"
                f"{rsna.EXPECTED_LAYOUT}"
            )
        return path.resolve()
    if rsna.is_rsna_layout(paths.rsna_dir()):
        return paths.rsna_dir().resolve()
    target = paths.demo_dir()
    if not rsna.is_demo_dataset(target):
        demo = _demo()
        n = int(n_demo or demo.DEMO_DEFAULT_N)
        print(f"No real data in {paths.rsna_dir()}: generating the SYNTHETIC DEMO dataset "
              f"({n} images) into {target} (first use).", flush=True)
        demo.make_demo_dataset(target, n, seed=0, workers=workers, progress=progress)
    return target.resolve()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _display_path(path: Path) -> str:
    """``path`` relative to the repository root (POSIX) when under it, else absolute."""
    try:
        return path.resolve().relative_to(paths.repo_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def _image_set(dicoms: dict[str, Path]) -> dict[str, Any]:
    """``{"count", "names_sha256"}`` of the training DICOMs (names only: cheap, location-free)."""
    names = sorted(p.name for p in dicoms.values())
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    return {"count": len(names), "names_sha256": digest}


def describe_source(data_dir: Path, layout: rsna.RsnaLayout,
                    dicoms: dict[str, Path] | None = None) -> dict[str, Any]:
    """The source record of a data folder (kind refined after decoding).

    ``{"kind", "folder_kind", "path", "abs_path", "labels_sha256", "images"}``: the identity is
    ``folder_kind`` (demo marker present or not), ``labels_sha256`` and ``images``
    (:func:`_image_set`); ``path`` (relative to the repository root when under it) and
    ``abs_path`` say where it was, for people.
    """
    kind = "demo" if rsna.is_demo_dataset(data_dir) else "rsna"
    dicoms = layout.train_dicoms() if dicoms is None else dicoms
    return {"kind": kind, "folder_kind": kind, "path": _display_path(data_dir),
            "abs_path": str(data_dir), "labels_sha256": _file_sha256(layout.labels_csv),
            "images": _image_set(dicoms)}


def same_source(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when two source records name the same data, wherever its folder now lives.

    Records written before the image set was recorded fall back to comparing the path.
    """
    if old.get("labels_sha256") != new.get("labels_sha256"):
        return False
    if "folder_kind" in old and old["folder_kind"] != new.get("folder_kind"):
        return False
    if "images" in old:
        return old["images"] == new.get("images")
    return str(old.get("path")) == str(new.get("abs_path", new.get("path")))


def _final_kind(kind: str, n_images: int, n_synthetic: int) -> str:
    """Demo marker and DICOM headers must agree; a mixture is ``other``, never ``rsna``."""
    if n_images == 0:
        return kind
    if kind == "demo":
        return "demo" if n_synthetic == n_images else "other"
    if n_synthetic == 0:
        return kind
    return "demo" if n_synthetic == n_images else "other"


# ----------------------------------------------------------------------------- output folder


def _earlier_run(out_dir: Path) -> dict[str, Any] | None:
    """Source and parameters recorded in ``out_dir`` (stats.json, else preprocess_config.json);
    ``{}`` when arrays or a manifest exist without either; None for an unused folder."""
    for name in (STATS_NAME, CONFIG_NAME):
        path = out_dir / name
        if path.is_file():
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                return {}
            if isinstance(record, dict) and "source" in record and "parameters" in record:
                return record
            return {}
    has_arrays = any(
        next((out_dir / s).rglob("*.npy"), None) is not None for s in SPLITS if (out_dir / s).is_dir()
    )
    return {} if has_arrays or (out_dir / MANIFEST_NAME).is_file() else None


def check_compatible(out_dir: Path, source: dict[str, Any], parameters: dict[str, Any]) -> None:
    """Refuse to add to a folder that holds outputs of another source or other parameters.

    Raises:
        DataSourceError: naming both sources (or parameter sets) and the fix.
    """
    earlier = _earlier_run(out_dir)
    if earlier is None:
        return
    fix = ("Run again with --overwrite to delete them and start over, or choose another "
           "--out-dir.")
    if not earlier:
        raise DataSourceError(
            f"{out_dir} already holds processed arrays of unknown origin (no readable {STATS_NAME} "
            f"or {CONFIG_NAME}); they could be from another data source. {fix}"
        )
    old_src = earlier.get("source") or {}
    if not same_source(old_src, source):
        old_images = old_src.get("images") or {}
        raise DataSourceError(
            f"{out_dir} holds outputs made from another data source:\n"
            f"  existing: {old_src.get('kind')} data from "
            f"{old_src.get('abs_path', old_src.get('path'))} "
            f"(labels sha256 {str(old_src.get('labels_sha256'))[:12]}, "
            f"{old_images.get('count', '?')} DICOMs)\n"
            f"  this run: {source['kind']} data from {source['abs_path']} "
            f"(labels sha256 {source['labels_sha256'][:12]}, {source['images']['count']} "
            f"DICOMs)\n"
            f"Demo and real outputs must never mix. {fix}"
        )
    old_params = {k: (earlier.get("parameters") or {}).get(k) for k in _COMPARED_PARAMETERS}
    if old_params != parameters:
        diff = {k: (old_params[k], parameters[k]) for k in parameters if old_params[k] != parameters[k]}
        raise DataSourceError(
            f"{out_dir} holds outputs made with other parameters (existing, this run): {diff}. "
            f"Arrays of different sizes or splits must not mix. {fix}"
        )


_LABEL_DIRS = ("0", "1")
_OWN_NAMES = (MANIFEST_NAME, STATS_NAME, SKIPPED_NAME, CONFIG_NAME)


def _is_own_scratch(name: str) -> bool:
    """The lock file and atomic-write temporaries (``.<name>.<random>.tmp``)."""
    return name == LOCK_NAME or (name.startswith(".") and name.endswith(".tmp"))


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that preprocessing did not make, or cannot write to.

    Accepted: a missing folder (created here), an empty one (the lock file and temporaries
    aside), or one holding ``stats.json`` or ``preprocess_config.json``.

    Raises:
        ConfigError: the folder (or its parent) is not writable, or is a file.
        DataSourceError: a non-empty folder without preprocessing's marker files.
    """
    problem = paths.writable_folder_problem(out_dir)
    if problem is not None and problem.kind == "file" and problem.blocker == out_dir:
        raise ConfigError(f"--out-dir {out_dir} is a file, not a folder; choose a folder.")
    if problem is not None:  # a parent in the way, or no permission to write
        raise ConfigError(
            f"--out-dir {out_dir} is not writable ({problem.reason}); fix its permissions "
            f"or choose a folder you can write to."
        )
    if any((out_dir / name).is_file() for name in (STATS_NAME, CONFIG_NAME)):
        return
    entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(out_dir)
                     if not _is_own_scratch(e.name))
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise DataSourceError(
            f"--out-dir {out_dir} is not empty and was not made by preprocessing (no "
            f"{STATS_NAME} or {CONFIG_NAME}): it holds {shown}. Preprocessing writes only into "
            f"an empty or new folder (or one it made), and --overwrite never deletes files it "
            f"did not write: choose an empty --out-dir."
        )


def _own_arrays(out_dir: Path) -> list[Path]:
    """The arrays the folder's manifest lists (none without a readable manifest)."""
    path = out_dir / MANIFEST_NAME
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    found = []
    for row in rows:
        rel = str(row.get("array_file") or "")
        parts = rel.split("/")
        # Only <split>/<label>/<name>.npy, never a path that leaves the folder.
        if (len(parts) == 3 and parts[0] in SPLITS and parts[1] in _LABEL_DIRS
                and parts[2].endswith(".npy") and parts[2] not in (".npy", "..npy")):
            found.append(out_dir / rel)
    return found


def _clear_outputs(out_dir: Path, patient_ids: Iterable[str] = ()) -> None:
    """Delete what preprocessing wrote, and no more (``--overwrite``).

    The arrays the manifest lists (and ``<patientId>.npy`` of this run's patients, about to be
    rewritten anyway), the named files, the temporaries, then ``<split>/<label>/`` and
    ``<split>/`` if that left them empty. Anything else (a user's file) stays where it is.
    """
    for path in _own_arrays(out_dir):
        path.unlink(missing_ok=True)
    names = {f"{p}.npy" for p in patient_ids}
    for split in SPLITS:
        for label in _LABEL_DIRS:
            folder = out_dir / split / label
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name in names and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
    for name in _OWN_NAMES:
        (out_dir / name).unlink(missing_ok=True)
    _clean_stale_tmp(out_dir)
    for split in SPLITS:
        for folder in (*(out_dir / split / label for label in _LABEL_DIRS), out_dir / split):
            with contextlib.suppress(OSError):  # not empty (a user's file) or absent: kept
                folder.rmdir()


def _clean_stale_tmp(out_dir: Path) -> int:
    """Remove ``*.tmp`` left by a killed run (arrays and atomic JSON/CSV writes)."""
    stale = [p for p in out_dir.glob(".*.tmp")]
    for split in SPLITS:
        for label in _LABEL_DIRS:
            if (out_dir / split / label).is_dir():
                stale += list((out_dir / split / label).glob("*.npy.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``out_dir`` (released by the OS even on SIGKILL).

    A POSIX record lock (``lockf``), which forked worker processes do not inherit: a worker
    that outlives a killed parent never keeps the folder locked.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one preprocessing at a time.
        yield
        return
    fh = open(out_dir / LOCK_NAME, "a+")
    try:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise DataSourceError(
                f"another preprocessing run is writing to {out_dir} (it holds {LOCK_NAME}); wait "
                f"for it to finish or choose another --out-dir."
            ) from exc
        yield
    finally:
        fh.close()


def _write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    with atomic_write(path, newline="") as fh:
        fh.write(buf.getvalue())


# ----------------------------------------------------------------------------- per image


@dataclass(frozen=True)
class _Task:
    patient_id: str
    source: str
    array_path: str
    boxes: tuple[tuple[float, float, float, float], ...]
    box_lines: tuple[int, ...] = ()  # the labels-CSV line of each box (for skipped.csv)


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a worker reports for one image (never the array itself: the parent stays small).

    Attributes:
        patient_id: the RSNA ``patientId`` (the DICOM's file stem).
        status: ``"written"`` (decoded and saved now), ``"reused"`` (a valid array from an
            earlier run was kept; only the DICOM header was read) or ``"failed"``.
        reason: why it failed (one line, for ``skipped.csv``); ``""`` otherwise.
        notes: decoder notes of a written image (counted in ``stats.json``); empty otherwise.
        fast_path: True/False whether the RSNA fast decoder made a written image; None when
            reused or failed.
        boxes: the image's boxes in output pixels ``[x, y, width, height]`` (clipped to it).
        boxes_clipped: how many of its boxes were clipped to the image.
        boxes_dropped: ``(labels-CSV line, reason)`` of each box wholly outside the image.
        pixel_sum, pixel_sumsq: exact integer sum and sum of squares of the uint8 array
            (0..255 values); the train mean/std come from these.
        view_position, sex: DICOM header values (``""`` when absent).
        age: the patient's age in years, ``""`` when absent.
        is_synthetic: the DICOM carries the demo generator's marker.
    """

    patient_id: str
    status: str
    reason: str = ""
    notes: tuple[str, ...] = ()
    fast_path: bool | None = None
    boxes: list[list[float]] = field(default_factory=list)
    boxes_clipped: int = 0
    boxes_dropped: list[tuple[int, str]] = field(default_factory=list)
    pixel_sum: int = 0
    pixel_sumsq: int = 0
    view_position: str = ""
    sex: str = ""
    age: int | str = ""
    is_synthetic: bool = False

    @property
    def ok(self) -> bool:
        """Whether the image has an array (written or reused) and so a manifest row."""
        return self.status != "failed"

    @classmethod
    def failure(cls, patient_id: str, reason: str) -> ImageResult:
        return cls(patient_id=patient_id, status="failed", reason=reason)


def _load_valid(path: Path, size: int) -> np.ndarray | None:
    """The array at ``path`` if it loads as uint8 ``(size, size)``; else None."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.uint8 or arr.shape != (size, size):
        return None
    return arr


@functools.lru_cache(maxsize=8)
def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The ``.npy`` (format 1.0) header ``np.save`` writes for a C-ordered array."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    """Save as ``.npy`` to ``<path>.<pid>.tmp`` in the same folder, then ``os.replace`` onto ``path``.

    The file is byte for byte what ``np.save`` writes; the header is built once per shape.
    """
    array = np.ascontiguousarray(array)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(_npy_header(array.shape, np.lib.format.dtype_to_descr(array.dtype)))
            fh.write(array.data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pixel_sums(image: np.ndarray) -> tuple[int, int]:
    """Exact integer sum and sum of squares of a uint8 image (order-independent totals).

    Summed as float64, which is exact for integer totals below 2**53 (any image under 2**37
    pixels) in any summation order, and 4x faster than an int64 histogram. ``einsum`` rather
    than ``@``: a BLAS dot product this long would wake idle BLAS threads in every worker.
    """
    values = image.ravel().astype(np.float64)
    return int(values.sum()), int(np.einsum("i,i->", values, values))


def _output_boxes(geometry: Any, task: _Task) -> tuple[list[list[float]], int,
                                                      list[tuple[int, str]]]:
    """The task's boxes clipped to the image's own size, in output pixels.

    Returns ``(boxes, n_clipped, dropped)``; ``dropped`` lists ``(csv line, reason)`` of the
    boxes wholly outside the image.
    """
    kept, clipped, dropped = [], 0, []
    lines = task.box_lines or (0,) * len(task.boxes)
    for box, line in zip(task.boxes, lines, strict=True):
        problem = rsna.box_problem(box, geometry.width, geometry.height)
        if problem is not None:
            dropped.append((line, problem))
            continue
        box, changed = rsna.clip_box(box, geometry.width, geometry.height)
        clipped += changed
        kept.append(box)
    out = [[round(float(v), 2) for v in box] for box in geometry.boxes_to_output(kept)]
    return out, clipped, dropped


def _process_one(task: _Task, size: int, fast: bool) -> ImageResult:
    """Decode (or reuse) one image; returns metadata and pixel sums, never the array."""
    out = Path(task.array_path)
    try:
        array = _load_valid(out, size) if out.exists() else None
        if array is not None:
            # Resume: the header alone restores the manifest fields and the box geometry.
            meta = dicom.read_header(task.source)
            if not meta.rows or not meta.columns:
                raise DicomReadError(task.source, "header lacks Rows/Columns")
            geometry = dicom.square_geometry(meta.rows, meta.columns, size)
            status, notes, fast_path = "reused", (), None
        else:
            radiograph = dicom.load_dicom_resized(task.source, size=size, fast=fast)
            array = radiograph.image
            if array.dtype != np.uint8 or array.shape != (size, size):
                raise DicomReadError(task.source, f"decoded to {array.shape} {array.dtype}, "
                                                  f"expected ({size}, {size}) uint8")
            save_array_atomic(out, array)  # its folder was made before the workers started
            meta, geometry = radiograph.meta, radiograph.geometry
            status, notes = "written", tuple(radiograph.notes)
            fast_path = bool(radiograph.fast_path)
        boxes, boxes_clipped, boxes_dropped = _output_boxes(geometry, task)
    except DicomReadError as exc:
        return ImageResult.failure(task.patient_id, exc.reason)
    except Exception as exc:  # a batch job records the failure and carries on
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return ImageResult.failure(task.patient_id, reason)
    pixel_sum, pixel_sumsq = _pixel_sums(array)
    return ImageResult(
        patient_id=task.patient_id, status=status, notes=notes, fast_path=fast_path,
        boxes=boxes, boxes_clipped=boxes_clipped, boxes_dropped=boxes_dropped,
        pixel_sum=pixel_sum, pixel_sumsq=pixel_sumsq,
        view_position=meta.view_position or "",
        sex=meta.sex or "",
        age="" if meta.age is None else int(meta.age),
        is_synthetic=bool(meta.is_synthetic),
    )


REASON_CRASH = ("the decoder crashed (its worker process died: segfault or out of memory); "
                "the file is probably corrupt")


def _exit_with_parent(parent: int) -> None:
    # A worker whose parent was killed (SIGKILL: no cleanup) must not linger and keep writing.
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _init_worker() -> None:
    # One OpenCV thread per process: the parallelism is across files.
    import cv2
    cv2.setNumThreads(1)
    # The objects inherited from the parent (pandas, pydicom, ...) never become garbage here:
    # keeping them out of the collector spares each collection their traversal, and the
    # copy-on-write page faults that touching them would cost.
    gc.freeze()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _run_chunk(tasks: list[_Task], size: int, fast: bool) -> list[ImageResult]:
    # pydicom warns on every non-standard value (e.g. RSNA's PatientAge "51" without "Y"); that
    # would drown the progress bar, and what matters for an image is in its notes or reason.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return [_process_one(t, size, fast) for t in tasks]


def _executor(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(),
                               initializer=_init_worker)


def _iter_results(tasks: list[_Task], size: int, fast: bool, workers: int,
                  chunksize: int) -> Iterator[list[ImageResult]]:
    """Per-image results, chunk by chunk, in completion order.

    Decoding always happens in worker processes, so a decoder that crashes the process
    (a segfault in a C library on a hostile file) costs one file, not the run: at most
    ``2 * workers`` chunks are in flight, and when the pool breaks those are re-run one file
    at a time in a single-worker pool, which names the culprit; the rest carry on in parallel.
    """
    queue = deque(tasks[i:i + chunksize] for i in range(0, len(tasks), chunksize))
    suspects: list[_Task] = []
    while queue:
        inflight: dict[Future, list[_Task]] = {}
        with _executor(min(workers, len(queue))) as pool:
            try:
                while queue or inflight:
                    while queue and len(inflight) < 2 * workers:
                        chunk = queue.popleft()
                        inflight[pool.submit(_run_chunk, chunk, size, fast)] = chunk
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = future.result()  # BrokenProcessPool if a worker died
                        del inflight[future]
                        yield result
            except BrokenProcessPool:
                suspects.extend(t for chunk in inflight.values() for t in chunk)
    pool = None
    for task in suspects:
        pool = pool or _executor(1)
        try:
            yield pool.submit(_run_chunk, [task], size, fast).result()
        except BrokenProcessPool:
            pool.shutdown()
            pool = None
            yield [ImageResult.failure(task.patient_id, REASON_CRASH)]
    if pool is not None:
        pool.shutdown()


# ----------------------------------------------------------------------------- the run


def _counts(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {s: {str(t): int(((manifest["split"] == s) & (manifest["label"] == t)).sum())
                for t in (0, 1)} for s in SPLITS}


def _class_counts(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    classes = manifest["class"].replace("", "unknown")
    return {s: {str(k): int(v) for k, v in classes[manifest["split"] == s].value_counts()
                .sort_index().items()} for s in SPLITS}


def _mean_std(results: Sequence[ImageResult], splits: Sequence[str],
              size: int) -> tuple[float, float, str]:
    """Train-split mean/std on [0, 1] from exact integer sums (all splits if train is empty).

    ``splits[i]`` is the split of ``results[i]``."""
    scope = "train"
    chosen = [r for r, split in zip(results, splits, strict=True) if split == "train"]
    if not chosen:
        scope, chosen = "all", list(results)
    if not chosen:
        return float("nan"), float("nan"), "none"
    n = len(chosen) * size * size
    total = sum(r.pixel_sum for r in chosen)
    total_sq = sum(r.pixel_sumsq for r in chosen)
    mean = total / n / 255.0
    var = max(total_sq / n - (total / n) ** 2, 0.0) / 255.0**2
    return float(mean), float(np.sqrt(var)), scope


def run_preprocess(config: PreprocessConfig) -> PreprocessSummary:
    """Preprocess ``config.data_dir`` into ``config.out_dir`` (see the module docstring).

    Returns:
        :class:`PreprocessSummary`; ``n_images == 0`` when nothing could be written (then no
        manifest or stats are written, only ``skipped.csv``).

    Raises:
        DataSourceError: missing data folder, no labelled patient with a DICOM, an output
            folder that preprocessing did not make, outputs of another source or other
            parameters in ``out_dir`` (without ``overwrite``), or another run holding the folder.
        LabelsError: missing or malformed labels CSV.
        ConfigError: invalid size, fractions or workers; an output folder that is not writable.
    """
    if config.size < 8:
        raise ConfigError(f"--size {config.size}: the output side must be at least 8 pixels.")
    _check_fractions(config.val_fraction, config.test_fraction)
    workers = config.workers if config.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1.")

    data_dir = resolve_data_dir(config.data_dir, config.n_demo, config.workers, config.progress)
    out_dir = Path(config.out_dir or paths.processed_dir()).expanduser().resolve()
    if out_dir == data_dir or (data_dir in out_dir.parents and out_dir.name in (
            rsna.TRAIN_IMAGES_DIR, rsna.TEST_IMAGES_DIR)):
        raise ConfigError(f"--out-dir {out_dir} must not be the data folder or its images folder.")
    start = time.perf_counter()
    layout = rsna.find_layout(data_dir)
    # Boxes are judged off-image per image, against its own size (its header), in the workers.
    labels, label_report = rsna.parse_labels(data_dir, image_size=None)
    dicoms = layout.train_dicoms()
    _check_overlap(layout, labels, dicoms)
    source = describe_source(data_dir, layout, dicoms)
    demo_source = DataSource.from_json(source).is_demo
    if demo_source and config.data_dir is not None:
        print(demo_banner(f"Preprocessing the synthetic demo dataset {data_dir}."), flush=True)
    elif demo_source:
        print(demo_banner(f"No real data in {paths.rsna_dir()}: using the demo dataset "
                          f"{data_dir}."), flush=True)

    check_out_dir(out_dir)  # before any work: a foreign or read-only folder stops here
    prov = provenance()  # once per run: it asks git and every package for its version
    with _folder_lock(out_dir):
        if config.overwrite:
            _clear_outputs(out_dir, labels["patientId"])
        else:
            check_compatible(out_dir, source, config.parameters())
        _clean_stale_tmp(out_dir)
        write_json_atomic(out_dir / CONFIG_NAME, {
            "config": {**asdict(config), "data_dir": str(data_dir), "out_dir": str(out_dir),
                       "workers": workers},
            "source": source, "parameters": config.parameters(), "provenance": prov,
        })
        summary = _process(config, layout, labels, label_report, dicoms, source, out_dir,
                           workers, start, prov)
    if source["kind"] == "rsna" and summary.source["kind"] != "rsna":
        print(demo_banner(f"{summary.source['synthetic_images']} of the {summary.n_images} DICOMs "
                          f"in {data_dir} are marked synthetic: source recorded as "
                          f"'{summary.source['kind']}'."), flush=True)
    print(summary.line(), flush=True)
    return summary


def _check_overlap(layout: rsna.RsnaLayout, labels: pd.DataFrame,
                   dicoms: dict[str, Path]) -> None:
    """Refuse a data folder where no labelled patient has a DICOM (a wrong or empty folder).

    Raises:
        DataSourceError: one line with the counts found and the expected layout.
    """
    common = len(set(labels["patientId"]).intersection(dicoms))
    if common:
        return
    images = layout.train_images
    state = "" if images.is_dir() else " (the folder does not exist)"
    raise DataSourceError(
        f"{layout.root}: no labelled patient has a DICOM: {len(labels)} patients in "
        f"{rsna.LABELS_NAME}, {len(dicoms)} DICOM files in {images}/{state}, 0 in common. "
        f"Expected {rsna.TRAIN_IMAGES_DIR}/<patientId>{rsna.DICOM_SUFFIX} for the patientIds "
        f"of {rsna.LABELS_NAME} (the RSNA layout: see the README)."
    )


def _process(config: PreprocessConfig, layout: rsna.RsnaLayout, labels: pd.DataFrame,
             label_report: rsna.LabelReport, dicoms: dict[str, Path], source: dict[str, Any],
             out_dir: Path, workers: int, start: float,
             prov: dict[str, Any]) -> PreprocessSummary:
    size = config.size
    plan = split_patients(labels, config.val_fraction, config.test_fraction, config.seed)
    plan = plan.merge(labels[["patientId", "boxes", "class"]], on="patientId", how="left")
    label_ids = set(plan["patientId"])
    missing = plan[~plan["patientId"].isin(dicoms)]
    unlabeled = sorted(set(dicoms) - label_ids)
    todo = plan[plan["patientId"].isin(dicoms)].reset_index(drop=True)
    relpaths = [array_relpath(s, t, p)
                for s, t, p in zip(todo["split"], todo["Target"], todo["patientId"], strict=True)]
    tasks = [
        _Task(patient_id=p, source=str(dicoms[p]), array_path=str(out_dir / rel),
              boxes=tuple(tuple(b) for b in boxes),
              box_lines=tuple(label_report.box_lines.get(p, ())))
        for p, rel, boxes in zip(todo["patientId"], relpaths, todo["boxes"], strict=True)
    ]
    for split in SPLITS:
        for t in (0, 1):
            (out_dir / split / str(t)).mkdir(parents=True, exist_ok=True)

    chunksize = max(1, min(16, len(tasks) // max(1, workers * 8)))
    results: dict[str, ImageResult] = {}
    with tqdm(total=len(tasks), desc="preprocess", unit="img", disable=not config.progress,
              file=sys.stderr) as bar:
        for chunk in _iter_results(tasks, size, config.fast, workers, chunksize):
            for r in chunk:
                results[r.patient_id] = r
            bar.update(len(chunk))

    ok = todo.assign(array_file=relpaths)
    ok = ok[[results[p].ok for p in ok["patientId"]]].reset_index(drop=True)
    rows = [results[p] for p in ok["patientId"]]
    manifest = pd.DataFrame({
        "patientId": ok["patientId"],
        "split": ok["split"],
        "label": ok["Target"].astype(int),
        "class": ok["class"].fillna(""),
        "view_position": [r.view_position for r in rows],
        "sex": [r.sex for r in rows],
        "age": [r.age for r in rows],
        "boxes": [json.dumps(r.boxes) for r in rows],
        "source_file": _real_paths([dicoms[p] for p in ok["patientId"]]),
        "array_file": ok["array_file"],
    }, columns=list(MANIFEST_COLUMNS))

    failed = [(str(dicoms[p]), results[p].reason)
              for p in todo["patientId"] if not results[p].ok]
    # Boxes judged against their image's own size in the workers join the label report.
    for p, r in zip(ok["patientId"], rows, strict=True):
        label_report.clipped_boxes += r.boxes_clipped
        label_report.invalid_rows.extend(
            rsna.InvalidLabelRow(line, p, reason) for line, reason in r.boxes_dropped)
        if r.boxes_dropped and not r.boxes:
            label_report.positives_without_box += 1
    skipped_rows = sorted(
        failed
        + [(str(layout.dicom_path(p)), REASON_NO_DICOM) for p in missing["patientId"]]
        + [(str(dicoms[p]), REASON_NO_LABEL) for p in unlabeled]
        + [(str(label_report.labels_csv), f"line {r.line} (patient {r.patient_id}): {r.reason}; "
            f"row ignored") for r in label_report.invalid_rows]
    )
    _write_csv_atomic(out_dir / SKIPPED_NAME, SKIPPED_COLUMNS, skipped_rows)
    _remove_strays(out_dir, set(manifest["array_file"]), label_ids)

    n_written = sum(r.status == "written" for r in results.values())
    n_reused = sum(r.status == "reused" for r in results.values())
    seconds = time.perf_counter() - start
    counts = _counts(manifest)
    n_images = len(manifest)
    n_synthetic = sum(r.is_synthetic for r in rows)
    source = {**source, "kind": _final_kind(source["kind"], n_images, n_synthetic),
              "synthetic_images": n_synthetic}
    summary = PreprocessSummary(
        out_dir=out_dir, source=source, written=n_written, reused=n_reused, skipped=len(failed),
        missing_dicom=len(missing), unlabeled=len(unlabeled), seconds=seconds,
        images_per_second=n_images / seconds if seconds > 0 else 0.0, counts=counts,
        labels=label_report.counts(),
    )
    if n_images == 0:
        # Nothing usable: leave no manifest/stats that a trainer could mistake for data.
        (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        (out_dir / STATS_NAME).unlink(missing_ok=True)
        return _finish(summary, start)

    mean, std, scope = _mean_std(rows, ok["split"].tolist(), size)
    notes = Counter(n for r in rows for n in r.notes)
    test_dicoms = len(rsna.list_dicoms(layout.test_images)) if layout.test_images else 0
    _write_csv_atomic(out_dir / MANIFEST_NAME, MANIFEST_COLUMNS,
                      manifest.itertuples(index=False, name=None))
    write_json_atomic(out_dir / STATS_NAME, {
        "mean": mean,
        "std": std,
        "mean_std_scope": scope,
        "size": size,
        "source": source,
        "split_fingerprint": split_fingerprint(manifest),  # which patient is in which split
        "counts": counts,
        "class_counts": _class_counts(manifest),
        "n_images": n_images,
        "skipped": {"unreadable": len(failed), "missing_dicom": len(missing),
                    "unlabeled": len(unlabeled)},
        "unlabelled_test_images_not_processed": test_dicoms,
        "labels": label_report.counts(),
        "parameters": config.parameters(),
        # This run only (a resumed run decodes fewer files): excluded from output comparisons.
        "last_run": {
            "written": n_written, "reused": n_reused, "workers": workers,
            "seconds": round(seconds, 3), "images_per_second": round(summary.images_per_second, 2),
            "fast_path_written": sum(r.fast_path is True for r in rows),
            "decode_notes": dict(notes.most_common(20)),
        },
        "provenance": prov,
    })
    return _finish(summary, start)


def _finish(summary: PreprocessSummary, start: float) -> PreprocessSummary:
    """Stamp the wall time, manifest and stats writing included."""
    summary.seconds = time.perf_counter() - start
    summary.images_per_second = summary.n_images / summary.seconds if summary.seconds > 0 else 0.0
    return summary


def _real_paths(files: Sequence[Path]) -> list[str]:
    """``Path.resolve()`` of files in a few folders, with one ``lstat`` per file, not per part."""
    real_dirs: dict[Path, Path] = {}
    out = []
    for f in files:
        if f.is_symlink():
            out.append(f.resolve().as_posix())
            continue
        if f.parent not in real_dirs:
            real_dirs[f.parent] = f.parent.resolve()
        out.append((real_dirs[f.parent] / f.name).as_posix())
    return out


def _remove_strays(out_dir: Path, keep: set[str], patient_ids: set[str]) -> int:
    """Delete this run's patients' arrays that are not in its manifest (e.g. a file that no
    longer decodes); only ``<split>/{0,1}/<patientId>.npy``, never another file."""
    removed = 0
    for split in SPLITS:
        for label in _LABEL_DIRS:
            label_dir = out_dir / split / label
            if not label_dir.is_dir():
                continue
            for entry in os.scandir(label_dir):
                rel = f"{split}/{label}/{entry.name}"
                if (entry.name.endswith(".npy") and entry.name[:-4] in patient_ids
                        and rel not in keep):
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


# ----------------------------------------------------------------------------- for trainers


def _is_source_of(recorded: dict[str, Any], data_dir: Path) -> bool:
    """Whether ``data_dir`` holds the data ``recorded`` (a stats.json source) was made from."""
    data_dir = data_dir.expanduser().resolve()
    try:
        layout = rsna.find_layout(data_dir)
    except PneumocamError:
        return False
    return same_source(recorded, describe_source(data_dir, layout))


def processed_is_valid(out_dir: str | Path) -> bool:
    """True when ``out_dir`` has readable stats and manifest and every listed array exists."""
    out_dir = Path(out_dir)
    try:
        read_stats(out_dir)
        manifest = read_manifest(out_dir)
    except ProcessedDataError:
        return False
    return all((out_dir / rel).is_file() for rel in manifest["array_file"])


def ensure_processed(out_dir: str | Path | None = None, data_dir: str | Path | None = None,
                     size: int = 224, n_demo: int | None = None, workers: int | None = None,
                     progress: bool = True) -> Path:
    """Return a folder of valid processed data, preparing it (demo data if need be) when absent.

    Does nothing when ``out_dir`` already holds valid outputs (any size: trainers read it from
    ``stats.json``), except say so when they come from the synthetic demo data. Otherwise runs
    :func:`run_preprocess` with default settings, which generates the demo dataset when no real
    data is present (saying so loudly).

    Raises:
        DataSourceError: ``data_dir`` given and the existing outputs come from another folder.
        ProcessedDataError: preprocessing wrote no image.
    """
    out = Path(out_dir or paths.processed_dir()).expanduser().resolve()
    if processed_is_valid(out):
        src = read_stats(out).get("source") or {}
        if data_dir is not None and not _is_source_of(src, Path(data_dir)):
            raise DataSourceError(
                f"{out} holds data processed from {src.get('abs_path', src.get('path'))} "
                f"({src.get('kind')}), not from "
                f"{data_dir}. Run `python scripts/preprocess.py --data-dir {data_dir} --out-dir {out} "
                f"--overwrite` to replace it, or pass another output folder."
            )
        source = DataSource.from_json(src)
        if source.maybe_synthetic:
            print(f"Using processed {src.get('kind')} data in {out} (made from {src.get('path')})."
                  + (" This is SYNTHETIC DEMO DATA, not RSNA." if source.is_demo else ""),
                  flush=True)
            if source.is_demo and rsna.is_rsna_layout(paths.rsna_dir()):
                print(f"Real RSNA data is present in {paths.rsna_dir()}: run `python "
                      f"scripts/preprocess.py --overwrite` to use it instead.", flush=True)
        return out
    print(f"No valid processed data in {out}: preparing it now.", flush=True)
    summary = run_preprocess(PreprocessConfig(
        data_dir=Path(data_dir) if data_dir is not None else None, out_dir=out, size=size,
        workers=workers, n_demo=n_demo, progress=progress,
    ))
    if summary.n_images == 0:
        raise ProcessedDataError(
            f"preprocessing {summary.source.get('path')} wrote no image; see "
            f"{out / SKIPPED_NAME} for the reasons."
        )
    return out


__all__ = [
    "CONFIG_NAME", "PreprocessConfig", "PreprocessSummary", "check_compatible", "check_out_dir",
    "demo_banner", "describe_source", "same_source", "ensure_processed", "processed_is_valid", "resolve_data_dir",
    "run_preprocess", "save_array_atomic", "split_patients",
]
