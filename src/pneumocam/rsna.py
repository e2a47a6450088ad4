"""RSNA Pneumonia Detection Challenge files -> one record per patient, with boxes.

The layout (the Kaggle download, and the synthetic demo dataset alike)::

    <data_dir>/
        stage_2_train_labels.csv          patientId,x,y,width,height,Target
        stage_2_detailed_class_info.csv   patientId,class              (optional)
        stage_2_train_images/<patientId>.dcm
        stage_2_test_images/<patientId>.dcm                            (optional, unlabelled)

``stage_2_train_labels.csv`` has one row per box: a positive patient (``Target`` 1) has one row
per radiologist box, ``x``/``y`` the upper-left corner and ``width``/``height`` in the pixels of
the 1024x1024 original; a negative patient (``Target`` 0) has one row with the four box fields
empty. The real stage 2 file has 30,227 rows for 26,684 patients (one image each), 6,012 of
them positive (22.5%) with 9,555 boxes in all.

``stage_2_detailed_class_info.csv`` repeats each patient once per label row (30,227 rows), with
one of three classes: ``Lung Opacity`` (the positives), ``No Lung Opacity / Not Normal`` and
``Normal``. :func:`read_labels` collapses the duplicates.

Box rules (:func:`parse_labels`; a malformed *file* raises :class:`LabelsError`, a bad *box*
costs only its row):

- a positive row whose box has a non-finite value (``inf``, ``nan``), a width or height <= 0,
  or lies wholly outside the image is **invalid**: it is ignored and reported (line, patient,
  reason); preprocessing lists it in ``skipped.csv`` with the labels file as ``file``;
- a box partly outside the image is **clipped** to it and counted.

"The image" is ``0..1024`` (RSNA coordinates) by default; preprocessing passes
``image_size=None`` and applies the same two rules per image with that image's own size, read
from its header (:func:`box_problem`, :func:`clip_box`), so other datasets' boxes are judged
against their own images;
- an exact duplicate row (the same six fields) is **collapsed** to one and counted;
- a positive patient left with no valid box stays **positive with no box** (the label is the
  radiologist's; only the location is lost) and is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataSourceError, LabelsError

LABELS_NAME = "stage_2_train_labels.csv"
CLASS_INFO_NAME = "stage_2_detailed_class_info.csv"
TRAIN_IMAGES_DIR = "stage_2_train_images"
TEST_IMAGES_DIR = "stage_2_test_images"
DICOM_SUFFIX = ".dcm"
LABEL_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
BOX_COLUMNS = ("x", "y", "width", "height")
CLASS_COLUMNS = ("patientId", "class")
#: Written last by the demo generator: a folder with it holds complete synthetic data.
DEMO_INFO_JSON = "demo_info.json"
RSNA_IMAGE_SIZE = 1024  # side of every real stage 2 image; the box coordinates refer to it

EXPECTED_LAYOUT = f"""\
Expected the RSNA Pneumonia Detection Challenge layout:
    <data_dir>/{LABELS_NAME}           header: {",".join(LABEL_COLUMNS)}
    <data_dir>/{CLASS_INFO_NAME}   header: {",".join(CLASS_COLUMNS)}  (optional)
    <data_dir>/{TRAIN_IMAGES_DIR}/<patientId>{DICOM_SUFFIX}
    <data_dir>/{TEST_IMAGES_DIR}/<patientId>{DICOM_SUFFIX}  (optional)
One row per box; negatives (Target 0) have one row with x,y,width,height empty, e.g.
    patientId,x,y,width,height,Target
    0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0
    00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1
Download it from https://www.kaggle.com/competitions/rsna-pneumonia-detection-challenge/data
into data/rsna-pneumonia-detection-challenge/, or run `python scripts/make_demo_data.py`
for the synthetic demo dataset."""


@dataclass(frozen=True)
class RsnaLayout:
    """The files of one RSNA-layout folder.

    Attributes:
        root: the folder itself.
        labels_csv: ``stage_2_train_labels.csv`` (exists).
        class_csv: ``stage_2_detailed_class_info.csv``, or None when absent.
        train_images: ``stage_2_train_images/`` (may be missing; then no image is found).
        test_images: ``stage_2_test_images/``, or None when absent.
    """

    root: Path
    labels_csv: Path
    class_csv: Path | None
    train_images: Path
    test_images: Path | None

    def dicom_path(self, patient_id: str) -> Path:
        """Where ``patient_id``'s training DICOM is expected."""
        return self.train_images / f"{patient_id}{DICOM_SUFFIX}"

    def train_dicoms(self) -> dict[str, Path]:
        """``{patientId: path}`` for every ``*.dcm`` in the training images folder (sorted)."""
        return list_dicoms(self.train_images)


def is_demo_dataset(data_dir: str | Path) -> bool:
    """True when ``data_dir`` holds a complete synthetic dataset (its ``demo_info.json``).

    Here rather than in :mod:`pneumocam.demo` so that telling demo from real data does not
    import the generator.
    """
    return (Path(data_dir) / DEMO_INFO_JSON).is_file()


def is_rsna_layout(data_dir: str | Path) -> bool:
    """True when ``data_dir`` holds the labels CSV and the training images folder."""
    root = Path(data_dir)
    return (root / LABELS_NAME).is_file() and (root / TRAIN_IMAGES_DIR).is_dir()


def find_layout(data_dir: str | Path) -> RsnaLayout:
    """Locate the RSNA files under ``data_dir``.

    Raises:
        DataSourceError: ``data_dir`` does not exist or is not a folder.
        LabelsError: the labels CSV is missing (the message shows the expected layout).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataSourceError(
            f"data folder {root} does not exist. Pass --data-dir with an RSNA-layout folder, or "
            f"leave it out to use data/rsna-pneumonia-detection-challenge/ (or the demo data).\n"
            f"{EXPECTED_LAYOUT}"
        )
    labels = root / LABELS_NAME
    if not labels.is_file():
        raise LabelsError(f"{labels} not found.\n{EXPECTED_LAYOUT}")
    class_csv = root / CLASS_INFO_NAME
    test_dir = root / TEST_IMAGES_DIR
    return RsnaLayout(
        root=root,
        labels_csv=labels,
        class_csv=class_csv if class_csv.is_file() else None,
        train_images=root / TRAIN_IMAGES_DIR,
        test_images=test_dir if test_dir.is_dir() else None,
    )


def list_dicoms(folder: str | Path) -> dict[str, Path]:
    """``{stem: path}`` for every ``*.dcm`` directly in ``folder``, sorted by stem; {} if absent."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == DICOM_SUFFIX}
    return dict(sorted(found.items()))


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise LabelsError(
            f"{path} is empty; expected the header {','.join(required)}.\n{EXPECTED_LAYOUT}"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise LabelsError(f"{path} is not a readable CSV ({exc}).\n{EXPECTED_LAYOUT}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise LabelsError(
            f"{path} lacks the column(s) {missing}: its header is {','.join(df.columns)}, "
            f"expected {','.join(required)}.\n{EXPECTED_LAYOUT}"
        )
    for col in required:
        df[col] = df[col].str.strip()
    return df


def _rows(mask: pd.Series, limit: int = 5) -> str:
    """CSV line numbers (header = line 1) of the first ``limit`` True entries."""
    lines = (np.flatnonzero(mask.to_numpy()) + 2).tolist()
    shown = ", ".join(map(str, lines[:limit]))
    return f"line(s) {shown}" + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def read_class_info(path: str | Path) -> pd.Series:
    """``stage_2_detailed_class_info.csv`` -> ``Series`` patientId -> class (duplicates collapsed).

    Raises:
        LabelsError: missing file or columns, or one patient listed with two different classes.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path} not found.\n{EXPECTED_LAYOUT}")
    df = _read_csv(path, CLASS_COLUMNS)
    if (df["patientId"] == "").any():
        raise LabelsError(f"{path}: empty patientId on {_rows(df['patientId'] == '')}.")
    n_classes = df.groupby("patientId", sort=False)["class"].nunique()
    conflicting = n_classes[n_classes > 1]
    if not conflicting.empty:
        raise LabelsError(
            f"{path}: patient(s) {list(conflicting.index[:5])} have more than one class; each "
            f"patient must have a single class (repeated rows must agree)."
        )
    return df.drop_duplicates("patientId").set_index("patientId")["class"]


@dataclass(frozen=True)
class InvalidLabelRow:
    """A labels-CSV row ignored by :func:`parse_labels`: its CSV line (header = 1), patient, why."""

    line: int
    patient_id: str
    reason: str


@dataclass
class LabelReport:
    """What :func:`parse_labels` repaired or ignored (see the module docstring for the rules).

    Attributes:
        labels_csv: the file read.
        invalid_rows: rows ignored (bad box), in file order.
        duplicate_rows: exact duplicate rows collapsed (each extra copy counts one).
        clipped_boxes: boxes partly outside the image, clipped to it.
        positives_without_box: Target 1 patients whose every box was invalid (kept, no box).
        box_lines: ``{patientId: [CSV line of each kept box]}``, parallel to its ``boxes``.
    """

    labels_csv: Path
    invalid_rows: list[InvalidLabelRow] = field(default_factory=list)
    duplicate_rows: int = 0
    clipped_boxes: int = 0
    positives_without_box: int = 0
    box_lines: dict[str, list[int]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """The four counts as a JSON-ready dict (saved in ``stats.json``)."""
        return {"invalid_rows": len(self.invalid_rows), "duplicate_rows": self.duplicate_rows,
                "clipped_boxes": self.clipped_boxes,
                "positives_without_box": self.positives_without_box}


def _is_number_text(text: str) -> bool:
    """True for any text ``float()`` reads, ``inf`` and ``nan`` included (those are bad *values*,
    handled per row; ``two`` is a malformed *file*)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def box_problem(box: list[float] | tuple[float, ...], width: float | None = None,
                height: float | None = None) -> str | None:
    """Why a box ``[x, y, w, h]`` is unusable, or None.

    Non-finite values and a width or height <= 0 always; wholly outside a ``width`` x
    ``height`` image (pixel-edge coordinates ``0..width``) when the size is given.
    """
    x, y, w, h = (float(v) for v in box)
    values = {"x": x, "y": y, "width": w, "height": h}
    bad = [f"{k} {v}" for k, v in values.items() if not math.isfinite(v)]
    if bad:
        return f"box {', '.join(bad)} not finite"
    if w <= 0 or h <= 0:
        return f"box width {w:g} or height {h:g} <= 0"
    if width is not None and height is not None and (
            x >= width or y >= height or x + w <= 0 or y + h <= 0):
        return (f"box [{x:g}, {y:g}, {w:g}, {h:g}] wholly outside the {width:g}x{height:g} "
                f"image")
    return None


def clip_box(box: list[float] | tuple[float, ...], width: float,
             height: float) -> tuple[list[float], bool]:
    """A valid box (:func:`box_problem` None) cut to ``[0, width] x [0, height]``, and whether
    that changed it."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    out = [x0, y0, x1 - x0, y1 - y0]
    return out, out != [x, y, w, h]


def read_labels(data_dir: str | Path, labels_csv: str | Path | None = None,
                class_csv: str | Path | None = None) -> pd.DataFrame:
    """:func:`parse_labels` without its :class:`LabelReport` (invalid boxes dropped, duplicates
    collapsed, boxes clipped to the 1024x1024 RSNA image)."""
    return parse_labels(data_dir, labels_csv, class_csv)[0]


def parse_labels(data_dir: str | Path, labels_csv: str | Path | None = None,
                 class_csv: str | Path | None = None,
                 image_size: float | None = RSNA_IMAGE_SIZE,
                 ) -> tuple[pd.DataFrame, LabelReport]:
    """Read the RSNA labels (and class info when present) into one row per patient.

    Args:
        data_dir: an RSNA-layout folder (see the module docstring).
        labels_csv: override for ``<data_dir>/stage_2_train_labels.csv``.
        class_csv: override for ``<data_dir>/stage_2_detailed_class_info.csv`` (optional file).
        image_size: side of the images the box coordinates refer to (1024 for RSNA); None:
            not known here, so no box is judged off-image or clipped (the caller does it per
            image with :func:`box_problem` and :func:`clip_box`).

    Returns:
        ``(labels, report)``. ``labels``: DataFrame in first-appearance order, one row per
        patient, columns ``patientId`` (str), ``Target`` (int 0/1), ``boxes`` (list of
        ``[x, y, width, height]`` floats in the original image's pixels, clipped to it; empty for
        negatives and for positives without a valid box) and ``class`` (str, "" without a class
        file or row). For the real stage 2 file: 26,684 rows, 6,012 with Target 1, 9,555 boxes.
        ``report``: the rows ignored and the repairs made (:class:`LabelReport`).

    Raises:
        LabelsError: missing file, missing columns, a Target other than 0/1, a positive row
            without a complete box, a negative row with a box, a box field that is not a
            number, or one patient with both Target 0 and 1. The message names the file and
            the lines.
    """
    root = Path(data_dir)
    path = Path(labels_csv) if labels_csv is not None else root / LABELS_NAME
    if not path.is_file():
        raise LabelsError(f"{path} not found.\n{EXPECTED_LAYOUT}")
    df = _read_csv(path, LABEL_COLUMNS)
    if df.empty:
        raise LabelsError(f"{path} has a header but no rows.\n{EXPECTED_LAYOUT}")

    empty_id = df["patientId"] == ""
    if empty_id.any():
        raise LabelsError(f"{path}: empty patientId on {_rows(empty_id)}.")
    target = pd.to_numeric(df["Target"], errors="coerce")
    bad_target = ~target.isin([0, 1])
    if bad_target.any():
        values = sorted(set(df.loc[bad_target, "Target"]))[:5]
        raise LabelsError(
            f"{path}: Target must be 0 or 1, found {values} on {_rows(bad_target)}.\n"
            f"{EXPECTED_LAYOUT}"
        )
    target = target.astype(int)

    given = pd.concat([df[c] != "" for c in BOX_COLUMNS], axis=1)
    # float() rather than pd.to_numeric: "inf" and "nan" are numbers here (bad values, judged
    # per row below), "two" is not (a malformed file).
    box = pd.concat([df[c].map(lambda t: float(t) if _is_number_text(t) else np.nan)
                     for c in BOX_COLUMNS], axis=1)
    not_numeric = given & ~pd.concat([df[c].map(_is_number_text) for c in BOX_COLUMNS], axis=1)
    if not_numeric.any(axis=None):
        raise LabelsError(
            f"{path}: non-numeric box field on {_rows(not_numeric.any(axis=1))}; "
            f"x,y,width,height must be numbers (or all empty for a negative)."
        )
    positive = target == 1
    incomplete = positive & ~given.all(axis=1)
    if incomplete.any():
        raise LabelsError(
            f"{path}: Target 1 row(s) without a complete box (x,y,width,height) on "
            f"{_rows(incomplete)}; every positive row is one box.\n{EXPECTED_LAYOUT}"
        )
    boxed_negative = ~positive & given.any(axis=1)
    if boxed_negative.any():
        raise LabelsError(
            f"{path}: Target 0 row(s) with box fields on {_rows(boxed_negative)}; negatives "
            f"have x,y,width,height empty."
        )
    per_patient = target.groupby(df["patientId"], sort=False).agg(["min", "max"])
    mixed = per_patient[per_patient["min"] != per_patient["max"]]
    if not mixed.empty:
        raise LabelsError(
            f"{path}: patient(s) {list(mixed.index[:5])} have both Target 0 and Target 1 rows; "
            f"a patient is either negative (one row, no box) or positive (one row per box)."
        )

    report = LabelReport(labels_csv=path)
    # Exact copies of a row would double a box (or repeat a negative): keep the first.
    duplicate = df.duplicated(subset=list(LABEL_COLUMNS), keep="first")
    report.duplicate_rows = int(duplicate.sum())
    boxes: dict[str, list[list[float]]] = {}
    use = positive & ~duplicate
    lines = np.flatnonzero(use.to_numpy()) + 2
    pos_ids = df.loc[use, "patientId"].to_numpy()
    pos_boxes = box.loc[use].to_numpy(dtype=float)
    side = None if image_size is None else float(image_size)
    for line, pid, b in zip(lines, pos_ids, pos_boxes, strict=True):
        problem = box_problem(b, side, side)
        if problem is not None:
            report.invalid_rows.append(InvalidLabelRow(int(line), str(pid), problem))
            continue
        kept, changed = (clip_box(b, side, side) if side is not None
                         else ([float(v) for v in b], False))
        report.clipped_boxes += changed
        boxes.setdefault(pid, []).append(kept)
        report.box_lines.setdefault(pid, []).append(int(line))

    out = pd.DataFrame({"patientId": per_patient.index.astype(str),
                        "Target": per_patient["max"].to_numpy(dtype=int)})
    out["boxes"] = [boxes.get(pid, []) for pid in out["patientId"]]
    report.positives_without_box = int(sum(
        t == 1 and not b for t, b in zip(out["Target"], out["boxes"], strict=True)))

    cpath = Path(class_csv) if class_csv is not None else root / CLASS_INFO_NAME
    if class_csv is not None or cpath.is_file():
        classes = read_class_info(cpath)
        out["class"] = out["patientId"].map(classes).fillna("").astype(str)
    else:
        out["class"] = ""
    return out.reset_index(drop=True), report


def label_summary(labels: pd.DataFrame) -> dict[str, int]:
    """Counts of a :func:`read_labels` table: patients, positives, boxes."""
    return {
        "patients": int(len(labels)),
        "positive": int(labels["Target"].sum()),
        "boxes": int(sum(len(b) for b in labels["boxes"])),
    }
