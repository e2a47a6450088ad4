"""The fast path's header scan (pneumocam.dicom_scan) against pydicom, the reference.

Every file the scan accepts must give exactly what pydicom gives (the same meta fields, the
same JPEG frame, the same preprocessed image); everything else must be declined, never
misread: other encodings, sequences, several frames, truncated or corrupted files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
import pytest
from pydicom.encaps import get_frame
from test_dicom import pydicom_file, radiograph_like, write_jpeg_baseline, write_native

import pneumocam.dicom as dicom_mod
from pneumocam.demo import make_demo_dataset
from pneumocam.dicom import load_dicom_resized
from pneumocam.dicom_scan import scan_header
from pneumocam.errors import DicomReadError


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("scan-demo")
    make_demo_dataset(out, 24, seed=3, workers=1, progress=False)
    return sorted((out / "stage_2_train_images").glob("*.dcm"))


def scan(path: Path):
    return scan_header(Path(path).read_bytes(), dicom_mod._SCAN_TAGS)


def pydicom_meta(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dicom_mod._meta_from_dataset(pydicom.dcmread(path))


def pydicom_frame(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    return bytes(get_frame(ds.PixelData, 0, number_of_frames=1))


def assert_same_as_pydicom(path: Path) -> bool:
    """If the scan reads ``path`` (header and meta), both are pydicom's; True when it does."""
    header = scan(path)
    meta = dicom_mod._scanned_meta(header) if header is not None else None
    if meta is None:
        return False
    assert header.frame == pydicom_frame(path)
    assert meta == pydicom_meta(path)
    return True


def without_scan(path: Path, size: int = 224):
    with mock.patch.object(dicom_mod, "_load_scanned", lambda *args: None):
        return load_dicom_resized(path, size)


def test_demo_files_scan_like_pydicom_and_preprocess_identically(demo_files):
    for path in demo_files:
        assert assert_same_as_pydicom(path), path
        header = scan(path)
        assert dicom_mod._scanned_fast_ok(header, dicom_mod._scanned_meta(header))
        fast, reference = load_dicom_resized(path, 224), without_scan(path)
        assert fast.fast_path and reference.fast_path
        np.testing.assert_array_equal(fast.image, reference.image)
        assert (fast.meta, fast.geometry, fast.notes) == (
            reference.meta, reference.geometry, reference.notes)
        assert fast.meta.is_synthetic


def test_latin1_text_and_rsna_age_read_like_pydicom(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "51" is not a valid AS, but it is what RSNA ships
        path = write_jpeg_baseline(tmp_path / "l1.dcm", radiograph_like(256, 256),
                                   SpecificCharacterSet="ISO_IR 100", PatientID="Müller-7",
                                   PatientAge="51", NumberOfFrames=1)
    assert assert_same_as_pydicom(path)
    meta = dicom_mod._scanned_meta(scan(path))
    assert meta.patient_id == "Müller-7" and meta.age == 51 and meta.n_frames == 1
    np.testing.assert_array_equal(load_dicom_resized(path, 64).image, without_scan(path, 64).image)


@pytest.mark.parametrize("name", [
    "CT_small.dcm",  # native pixel data
    "MR_small_implicit.dcm",  # implicit VR
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "rtplan.dcm",  # sequences, no pixels
    "ExplVR_BigEndNoMeta.dcm",  # no preamble / file meta
    "color3d_jpeg_baseline.dcm",  # 120 frames
    "SC_rgb_jpeg_dcmtk.dcm",  # colour JPEG Baseline
    "MR_small_jp2klossless.dcm",  # JPEG 2000
    "JPEG-lossy.dcm",  # 12-bit JPEG Extended
    "emri_small_jpeg_2k_lossless.dcm",  # multi-frame JPEG 2000
    "SC_jpeg_no_color_transform.dcm",
])
def test_other_files_are_declined_or_read_exactly(name):
    path = pydicom_file(name)
    assert_same_as_pydicom(path)
    header = scan(path)
    if header is not None:  # accepted as a header, but only RSNA-like files take the fast path
        meta = dicom_mod._scanned_meta(header)
        assert meta is None or not dicom_mod._scanned_fast_ok(header, meta)
    try:
        reference = without_scan(path, 32)
    except DicomReadError as exc:
        with pytest.raises(DicomReadError) as got:
            load_dicom_resized(path, 32)
        assert got.value.reason == exc.reason
        return
    r = load_dicom_resized(path, 32)
    assert not r.fast_path
    np.testing.assert_array_equal(r.image, reference.image)


def test_sequences_multiframe_and_native_are_declined(tmp_path, demo_files):
    img = radiograph_like(64, 64)
    assert scan(write_native(tmp_path / "native.dcm", img, BitsAllocated=8)) is None
    seq_item = pydicom.Dataset()
    seq_item.CodeValue = "X"
    seq = write_jpeg_baseline(tmp_path / "seq.dcm", img, ProcedureCodeSequence=[seq_item])
    assert scan(seq) is None and load_dicom_resized(seq, 32).fast_path  # pydicom's fast path
    data = demo_files[0].read_bytes()
    assert scan_header(b"\0" * 128 + b"DICX" + data[132:], dicom_mod._SCAN_TAGS) is None


@pytest.mark.parametrize("attrs", [
    {"WindowCenter": 100, "WindowWidth": 100},
    {"RescaleSlope": 1, "RescaleIntercept": 0},
    {"PresentationLUTShape": "IDENTITY"},
    {"PhotometricInterpretation": "MONOCHROME1"},
    {"PatientID": "a\\b"},
    {"SpecificCharacterSet": "ISO 2022 IR 87"},
])
def test_anything_pydicom_should_judge_goes_to_pydicom(tmp_path, attrs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_jpeg_baseline(tmp_path / "x.dcm", radiograph_like(128, 128), **attrs)
    header = scan(path)
    meta = dicom_mod._scanned_meta(header)
    assert meta is None or not dicom_mod._scanned_fast_ok(header, meta)
    r, reference = load_dicom_resized(path, 32), without_scan(path, 32)
    np.testing.assert_array_equal(r.image, reference.image)
    assert (r.meta, r.notes, r.fast_path) == (reference.meta, reference.notes, reference.fast_path)


def test_truncated_or_corrupted_files_are_never_misread(demo_files, tmp_path):
    data = demo_files[1].read_bytes()
    for cut in [*range(0, 2000, 7), *range(2000, len(data), 997), len(data) - 1]:
        assert scan_header(data[:cut], dicom_mod._SCAN_TAGS) is None
    rng = np.random.default_rng(0)
    corrupt_path = tmp_path / "corrupt.dcm"
    accepted = 0
    for _ in range(300):  # one byte of the header or the start of the JPEG stream changed
        corrupt = bytearray(data)
        corrupt[int(rng.integers(132, 1500))] = int(rng.integers(0, 256))
        corrupt_path.write_bytes(bytes(corrupt))
        accepted += assert_same_as_pydicom(corrupt_path)  # accepted -> read as pydicom reads it
    assert accepted > 100  # most single-byte changes hit values, which are read as changed
