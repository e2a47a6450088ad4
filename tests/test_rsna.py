"""RSNA label/class CSVs -> one record per patient (pneumocam.rsna)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumocam import rsna
from pneumocam.errors import DataSourceError, LabelsError

HEADER = "patientId,x,y,width,height,Target\n"


def write(folder: Path, labels: str | None, classes: str | None = None,
          images: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        (folder / rsna.LABELS_NAME).write_text(labels)
    if classes is not None:
        (folder / rsna.CLASS_INFO_NAME).write_text(classes)
    if images:
        (folder / rsna.TRAIN_IMAGES_DIR).mkdir(exist_ok=True)
        for pid in images:
            (folder / rsna.TRAIN_IMAGES_DIR / f"{pid}.dcm").write_bytes(b"")
    return folder


GOOD_LABELS = HEADER + (
    "neg-1,,,,,0\n"
    "pos-2,264.0,152.0,213.0,379.0,1\n"
    "pos-2,562.0,152.0,256.0,453.0,1\n"
    "neg-3,,,,,0\n"
    "pos-4,100,200,50.5,60,1\n"
)
GOOD_CLASSES = (
    "patientId,class\n"
    "neg-1,Normal\n"
    "pos-2,Lung Opacity\n"
    "pos-2,Lung Opacity\n"          # the real file repeats each patient once per label row
    "neg-3,No Lung Opacity / Not Normal\n"
    "pos-4,Lung Opacity\n"
)


def test_one_row_per_patient_with_multi_box_and_negatives(tmp_path: Path) -> None:
    folder = write(tmp_path, GOOD_LABELS, GOOD_CLASSES)
    df = rsna.read_labels(folder)
    assert list(df.columns) == ["patientId", "Target", "boxes", "class"]
    assert list(df["patientId"]) == ["neg-1", "pos-2", "neg-3", "pos-4"]  # first appearance
    rec = df.set_index("patientId")
    assert rec.loc["pos-2", "boxes"] == [[264.0, 152.0, 213.0, 379.0], [562.0, 152.0, 256.0, 453.0]]
    assert rec.loc["pos-4", "boxes"] == [[100.0, 200.0, 50.5, 60.0]]
    assert rec.loc["neg-1", "boxes"] == [] and rec.loc["neg-3", "boxes"] == []
    assert list(df["Target"]) == [0, 1, 0, 1] and df["Target"].dtype.kind == "i"
    # duplicated class rows collapse to one value per patient
    assert rec.loc["pos-2", "class"] == "Lung Opacity"
    assert rec.loc["neg-3", "class"] == "No Lung Opacity / Not Normal"
    assert rsna.label_summary(df) == {"patients": 4, "positive": 2, "boxes": 3}


def test_class_file_optional_and_partial(tmp_path: Path) -> None:
    df = rsna.read_labels(write(tmp_path / "a", GOOD_LABELS))
    assert set(df["class"]) == {""}
    df = rsna.read_labels(write(tmp_path / "b", GOOD_LABELS, "patientId,class\nneg-1,Normal\n"))
    assert df.set_index("patientId")["class"].to_dict() == {
        "neg-1": "Normal", "pos-2": "", "neg-3": "", "pos-4": ""}


def test_conflicting_classes_rejected(tmp_path: Path) -> None:
    classes = "patientId,class\npos-2,Lung Opacity\npos-2,Normal\n"
    with pytest.raises(LabelsError, match=r"pos-2.*more than one class"):
        rsna.read_labels(write(tmp_path, GOOD_LABELS, classes))


def test_missing_file_names_file_and_layout(tmp_path: Path) -> None:
    with pytest.raises(LabelsError) as err:
        rsna.read_labels(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / rsna.LABELS_NAME) in msg and "not found" in msg
    assert "patientId,x,y,width,height,Target" in msg and rsna.TRAIN_IMAGES_DIR in msg


def test_missing_columns_prints_expected_header(tmp_path: Path) -> None:
    folder = write(tmp_path, "patientId,x,y,w,h,Target\na,,,,,0\n")
    with pytest.raises(LabelsError) as err:
        rsna.read_labels(folder)
    msg = str(err.value)
    assert "['width', 'height']" in msg and "patientId,x,y,width,height,Target" in msg
    assert str(folder / rsna.LABELS_NAME) in msg


def test_class_file_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match=r"lacks the column\(s\) \['class'\]"):
        rsna.read_labels(write(tmp_path, GOOD_LABELS, "patientId,label\nneg-1,Normal\n"))


@pytest.mark.parametrize("bad", ["2", "yes", ""])
def test_bad_target(tmp_path: Path, bad: str) -> None:
    folder = write(tmp_path, HEADER + "a,,,,,0\n" + f"b,,,,,{bad}\n")
    with pytest.raises(LabelsError, match=r"Target must be 0 or 1.*line\(s\) 3"):
        rsna.read_labels(folder)


def test_positive_row_without_box(tmp_path: Path) -> None:
    folder = write(tmp_path, HEADER + "a,,,,,0\nb,10,20,,40,1\n")
    with pytest.raises(LabelsError, match=r"Target 1 row\(s\) without a complete box.*line\(s\) 3"):
        rsna.read_labels(folder)


def test_negative_row_with_box(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match=r"Target 0 row\(s\) with box fields"):
        rsna.read_labels(write(tmp_path, HEADER + "a,1,2,3,4,0\n"))


def test_non_numeric_box_is_a_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="non-numeric box field"):
        rsna.read_labels(write(tmp_path / "a", HEADER + "a,1,two,3,4,1\n"))


def test_bad_boxes_are_ignored_clipped_or_collapsed_and_reported(tmp_path: Path) -> None:
    folder = write(tmp_path, HEADER + (
        "neg,,,,,0\n"
        "inf-w,10,20,inf,40,1\n"            # line 3: not finite
        "inf-w,100,100,50,50,1\n"           #   its other box is fine
        "nan-x,nan,20,30,40,1\n"            # line 5: not finite; the patient's only box
        "zero,1,2,0,4,1\n"                  # line 6: width 0
        "neg-w,1,2,-5,4,1\n"                # line 7: negative width
        "off,2000,10,30,30,1\n"             # line 8: wholly right of the image
        "off,-100,10,50,50,1\n"             # line 9: wholly left of it (x + w <= 0)
        "part,1000,-10,100,50,1\n"          # partly off: clipped to [1000, 0, 24, 40]
        "dup,10,10,20,20,1\n"
        "dup,10,10,20,20,1\n"               # exact copy: collapsed
        "neg,,,,,0\n"                       # exact copy of a negative row: collapsed
    ))
    df, report = rsna.parse_labels(folder)
    rec = df.set_index("patientId")
    assert rec.loc["inf-w", "boxes"] == [[100.0, 100.0, 50.0, 50.0]]
    assert rec.loc["part", "boxes"] == [[1000.0, 0.0, 24.0, 40.0]]
    assert rec.loc["dup", "boxes"] == [[10.0, 10.0, 20.0, 20.0]]
    # a positive left with no valid box stays positive, without a box, and is counted
    for pid in ("nan-x", "zero", "neg-w", "off"):
        assert rec.loc[pid, "Target"] == 1 and rec.loc[pid, "boxes"] == []
    assert [(r.line, r.patient_id) for r in report.invalid_rows] == [
        (3, "inf-w"), (5, "nan-x"), (6, "zero"), (7, "neg-w"), (8, "off"), (9, "off")]
    reasons = [r.reason for r in report.invalid_rows]
    assert "not finite" in reasons[0] and "<= 0" in reasons[2] and "outside" in reasons[4]
    assert report.counts() == {"invalid_rows": 6, "duplicate_rows": 2, "clipped_boxes": 1,
                               "positives_without_box": 4}
    assert rsna.read_labels(folder).equals(df)
    # the image's own size, when known, bounds the boxes instead of RSNA's 1024
    small, report = rsna.parse_labels(folder, image_size=512)
    assert small.set_index("patientId").loc["part", "boxes"] == []
    assert report.counts()["invalid_rows"] == 7


def test_inconsistent_target_for_one_patient(tmp_path: Path) -> None:
    folder = write(tmp_path, HEADER + "a,1,2,3,4,1\na,,,,,0\n")
    with pytest.raises(LabelsError, match=r"\['a'\] have both Target 0 and Target 1"):
        rsna.read_labels(folder)


def test_empty_and_header_only(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="is empty"):
        rsna.read_labels(write(tmp_path / "a", ""))
    with pytest.raises(LabelsError, match="no rows"):
        rsna.read_labels(write(tmp_path / "b", HEADER))


def test_layout_helpers(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", GOOD_LABELS, images=("pos-2", "neg-1"))
    assert rsna.is_rsna_layout(folder)
    assert not rsna.is_rsna_layout(write(tmp_path / "e", GOOD_LABELS))  # no images folder
    layout = rsna.find_layout(folder)
    assert layout.class_csv is None and layout.test_images is None
    assert list(layout.train_dicoms()) == ["neg-1", "pos-2"]
    assert layout.dicom_path("x") == folder / rsna.TRAIN_IMAGES_DIR / "x.dcm"
    with pytest.raises(DataSourceError, match="does not exist"):
        rsna.find_layout(tmp_path / "nowhere")
    with pytest.raises(LabelsError, match="not found"):
        rsna.find_layout(tmp_path)
