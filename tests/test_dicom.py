"""pneumocam.dicom: real pydicom test files for every transfer syntax, known-answer LUT maths,
the RSNA fast path against the full decode, squaring + boxes, and bad files.

pydicom test files are fetched by exact name with ``download=False`` (never a wildcard: that
tries the network). Which file covers which transfer syntax:

- Implicit VR LE: MR_small_implicit.dcm; Explicit VR LE: MR_small.dcm; Explicit VR BE:
  MR_small_bigendian.dcm; Deflated: image_dfl.dcm
- JPEG Baseline 8-bit: SC_rgb_jpeg_dcmtk.dcm (YBR_FULL), SC_rgb_dcmtk_+eb+cr.dcm (RGB),
  examples_ybr_color.dcm (YBR_FULL_422, 30 frames); no pydicom file is MONOCHROME2 8-bit,
  so the RSNA-like one is built here (cv2 JPEG wrapped with pydicom's encapsulate)
- JPEG Lossless SV1: JPGLosslessP14SV1_1s_1f_8b.dcm (gray), SC_rgb_jpeg_gdcm.dcm (RGB)
- JPEG 2000 lossless: RG1_J2KR.dcm, MR_small_jp2klossless.dcm, MR2_J2KR.dcm
- JPEG 2000 lossy: RG1_J2KI.dcm, 693_J2KI.dcm (reference: the *_UNCI.dcm files)
- RLE Lossless: MR_small_RLE.dcm, emri_small_RLE.dcm (10 frames), SC_rgb_rle.dcm
- JPEG-LS lossless (extra): MR_small_jpeg_ls_lossless.dcm
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_windowing, get_decoder
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

import pneumocam.dicom as dicom_mod
from pneumocam.dicom import (
    SYNTHETIC_PRIVATE_CREATOR,
    SYNTHETIC_PRIVATE_CREATOR_TAG,
    SYNTHETIC_STUDY_DESCRIPTION,
    DicomMeta,
    Radiograph,
    load_dicom_resized,
    load_image_file,
    parse_age,
    read_dicom,
    read_header,
    square_and_resize,
    square_geometry,
    to_uint8,
)
from pneumocam.errors import DicomReadError

LUMA = np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------- helpers


def pydicom_file(name: str) -> str:
    """Path of a pydicom / pydicom-data test file by exact name; skip if not installed."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed (pip install pydicom-data)")
    return str(path)


def raw_pixels(name: str) -> tuple[Dataset, np.ndarray]:
    ds = pydicom.dcmread(pydicom_file(name))
    return ds, ds.pixel_array


def _base_dataset(ts: str, rows: int, cols: int, **attrs) -> Dataset:
    fm = FileMetaDataset()
    fm.TransferSyntaxUID = ts
    fm.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    fm.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID = fm.MediaStorageSOPClassUID
    ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
    ds.PatientID = "p-001"
    ds.Modality = "CR"
    ds.ViewPosition = "PA"
    ds.PatientSex = "F"
    ds.PatientAge = "051Y"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def write_native(path: Path, arr: np.ndarray, **attrs) -> Path:
    """Uncompressed little-endian DICOM holding ``arr`` (H, W) gray or (H, W, 3) RGB."""
    arr = np.ascontiguousarray(arr)
    rgb = arr.ndim == 3
    bits = arr.dtype.itemsize * 8
    ds = _base_dataset(
        ExplicitVRLittleEndian,
        arr.shape[0],
        arr.shape[1],
        BitsAllocated=bits,
        BitsStored=bits,
        HighBit=bits - 1,
        PixelRepresentation=int(np.issubdtype(arr.dtype, np.signedinteger)),
    )
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def radiograph_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth chest-like uint8 image: dark lungs, bright spine, faint ribs, a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    img = 0.75 - 0.25 * ((u - 0.5) ** 2 + (v - 0.5) ** 2)
    for cx in (0.3, 0.7):
        img -= 0.45 * np.exp(-(((u - cx) / 0.13) ** 2 + ((v - 0.45) / 0.25) ** 2))
    img += 0.2 * np.exp(-(((u - 0.5) / 0.05) ** 2))
    for y0 in rng.uniform(0.2, 0.7, size=6):
        img += 0.06 * np.exp(-(((v - y0 - 0.1 * (u - 0.5) ** 2) / 0.01) ** 2))
    img += rng.normal(0, 0.01, (h, w)).astype(np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def write_jpeg_baseline(path: Path, img: np.ndarray, quality: int = 90, **attrs) -> Path:
    """RSNA-style DICOM: one 8-bit MONOCHROME2 JPEG Baseline frame (cv2-encoded)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    ds = _base_dataset(
        JPEGBaseline8Bit,
        img.shape[0],
        img.shape[1],
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
        **attrs,
    )
    ds.PixelData = encapsulate([buf.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def assert_read_error(path: Path | str, fn=read_dicom, contains: str = "") -> DicomReadError:
    with pytest.raises(DicomReadError) as info:
        fn(path)
    err = info.value
    assert str(Path(path)) in str(err)
    assert err.path == Path(path)
    assert "\n" not in err.reason and err.reason
    assert contains.lower() in err.reason.lower(), err.reason
    return err


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rg1() -> dict[str, Radiograph]:
    """The 15-bit MONOCHROME1 chest CR, read once per module (the files are big)."""
    return {
        n: read_dicom(pydicom_file(n)) for n in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm")
    }


@pytest.fixture(scope="module")
def rsna_like(tmp_path_factory) -> Path:
    """Like an RSNA file: 1024x1024 8-bit MONOCHROME2 JPEG Baseline, PatientAge "51"."""
    path = tmp_path_factory.mktemp("rsna") / "rsna_like.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "51" is not a valid AS, but it is what RSNA ships
        return write_jpeg_baseline(path, radiograph_like(1024, 1024), PatientAge="51")


@pytest.fixture(scope="module")
def mr_small_reference() -> np.ndarray:
    return read_dicom(pydicom_file("MR_small.dcm")).image


# --------------------------------------------------------------------------- transfer syntaxes


@pytest.mark.parametrize(
    "name, syntax",
    [
        ("MR_small_implicit.dcm", ImplicitVRLittleEndian),
        ("MR_small.dcm", ExplicitVRLittleEndian),
        ("MR_small_bigendian.dcm", ExplicitVRBigEndian),
        ("MR_small_RLE.dcm", RLELossless),
        ("MR_small_jp2klossless.dcm", JPEG2000Lossless),
        ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
    ],
)
def test_lossless_syntaxes_match_uncompressed(name, syntax, mr_small_reference):
    r = read_dicom(pydicom_file(name))
    assert r.meta.transfer_syntax == syntax
    assert r.image.dtype == np.float32 and r.image.shape == (64, 64)
    np.testing.assert_array_equal(r.image, mr_small_reference)


def test_jpeg_lossless_8bit_gray_known_window():
    path = pydicom_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    r = read_dicom(path)
    assert r.meta.transfer_syntax == JPEGLosslessSV1
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.astype(np.float64)  # WC 127, WW 254, LINEAR
    expected = np.clip((raw - 126.5) / 253 + 0.5, 0, 1)
    assert r.image.shape == (768, 1024)
    np.testing.assert_allclose(r.image, expected, atol=1e-6)


def test_jpeg_2000_lossless_and_lossy_real_ct():
    rev, unc = read_dicom(pydicom_file("693_J2KR.dcm")), read_dicom(pydicom_file("693_UNCR.dcm"))
    lossy, lossy_ref = (
        read_dicom(pydicom_file("693_J2KI.dcm")),
        read_dicom(pydicom_file("693_UNCI.dcm")),
    )
    assert rev.meta.transfer_syntax == JPEG2000Lossless and lossy.meta.transfer_syntax == JPEG2000
    np.testing.assert_array_equal(rev.image, unc.image)
    np.testing.assert_allclose(lossy.image, lossy_ref.image, atol=1e-6)


def test_deflated_explicit_vr():
    r = read_dicom(pydicom_file("image_dfl.dcm"))
    assert r.meta.transfer_syntax == DeflatedExplicitVRLittleEndian
    assert r.image.shape == (512, 512) and 0.0 <= r.image.min() < r.image.max() <= 1.0


def test_jpeg_baseline_color_files_decode_to_luma():
    rgb_ds, rgb = raw_pixels("SC_rgb.dcm")
    luma = rgb.astype(np.float64) @ LUMA / 255.0
    for name, photometric in (
        ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL"),
        ("SC_rgb_dcmtk_+eb+cr.dcm", "RGB"),
    ):
        r = read_dicom(pydicom_file(name))
        assert r.meta.transfer_syntax == JPEGBaseline8Bit
        assert r.meta.photometric == photometric
        assert f"{photometric} converted to gray" in r.notes
        assert np.abs(r.image - luma).mean() < 2 / 255  # lossy, but the same picture


@pytest.mark.parametrize(
    "plugin, names",
    [
        ("gdcm", ("MR_small_jp2klossless.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm")),
        ("pylibjpeg", ("MR_small_jp2klossless.dcm",)),
        ("pillow", ("MR_small_jp2klossless.dcm",)),
    ],
)
def test_result_does_not_depend_on_the_decoder_plugin(plugin, names, monkeypatch):
    """Each permissive plugin alone gives the same image (the README's decoder table)."""
    for name in names:
        path = pydicom_file(name)
        ds = pydicom.dcmread(path)
        decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
        if plugin not in decoder.available_plugins:
            pytest.skip(f"{plugin} not available for {decoder.UID.name}")
        reference = read_dicom(path).image
        monkeypatch.setattr(decoder, "_available", {plugin: decoder._available[plugin]})
        np.testing.assert_array_equal(read_dicom(path).image, reference)
        monkeypatch.undo()


def test_gray_jpeg_baseline_prefers_pillow_with_gdcm_identical_pixels(rsna_like, monkeypatch):
    """Full decode of an RSNA-like file: Pillow first (4x faster), same pixels as GDCM."""
    ds = pydicom.dcmread(rsna_like)
    decoder = get_decoder(JPEGBaseline8Bit)
    if not {"pillow", "gdcm"} <= set(decoder.available_plugins):
        pytest.skip("needs both Pillow and GDCM")
    used = []
    real_as_array = type(decoder).as_array

    def spy(self, src, **kwargs):
        used.append(kwargs.get("decoding_plugin"))
        return real_as_array(self, src, **kwargs)

    monkeypatch.setattr(type(decoder), "as_array", spy)
    full = load_dicom_resized(rsna_like, 224, fast=False)
    assert used == ["pillow"] and not full.fast_path
    gdcm, _ = real_as_array(decoder, ds, index=0, decoding_plugin="gdcm")
    pillow, _ = real_as_array(decoder, ds, index=0, decoding_plugin="pillow")
    np.testing.assert_array_equal(pillow, gdcm)


def test_preferred_plugin_failure_falls_back_to_the_others(rsna_like, monkeypatch):
    decoder = get_decoder(JPEGBaseline8Bit)
    real_as_array = type(decoder).as_array

    def pillow_breaks(self, src, **kwargs):
        if kwargs.get("decoding_plugin") == "pillow":
            raise RuntimeError("pillow could not")
        return real_as_array(self, src, **kwargs)

    monkeypatch.setattr(type(decoder), "as_array", pillow_breaks)
    r = load_dicom_resized(rsna_like, 64, fast=False)
    assert r.image.shape == (64, 64) and r.image.std() > 0


# --------------------------------------------------------------------------- MONOCHROME1


def test_rg1_monochrome1_has_dark_lungs(rg1):
    r = rg1["RG1_UNCR.dcm"]
    im = r.image
    assert r.meta.photometric == "MONOCHROME1" and r.meta.bits_stored == 15
    assert im.shape == (1955, 1841) and im.dtype == np.float32
    assert "MONOCHROME1 inverted" in r.notes
    h, w = im.shape

    def region(r0, r1, c0, c1):
        return float(im[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())

    lung_right_side = region(0.25, 0.5, 0.2, 0.35)  # patient's right lung, image left
    lung_left_side = region(0.25, 0.5, 0.65, 0.8)
    mediastinum = region(0.25, 0.5, 0.45, 0.55)
    # Without the inversion the lungs would be the bright ones and both asserts would fail.
    assert lung_right_side < mediastinum - 0.15
    assert lung_left_side < mediastinum - 0.15
    assert lung_right_side < np.percentile(im, 90) - 0.2


def test_rg1_known_answer_window_then_invert(rg1):
    ds, raw = raw_pixels("RG1_UNCR.dcm")
    assert float(ds.WindowCenter) == 15000 and float(ds.WindowWidth) == 30000
    expected = 1.0 - np.clip((raw.astype(np.float64) - 14999.5) / 29999 + 0.5, 0, 1)
    np.testing.assert_allclose(rg1["RG1_UNCR.dcm"].image, expected, atol=2e-6)


def test_rg1_jpeg2000_lossless_identical_lossy_close(rg1):
    unc, rev, lossy = rg1["RG1_UNCR.dcm"], rg1["RG1_J2KR.dcm"], rg1["RG1_J2KI.dcm"]
    assert rev.meta.transfer_syntax == JPEG2000Lossless
    assert lossy.meta.transfer_syntax == JPEG2000
    np.testing.assert_array_equal(rev.image, unc.image)
    diff = np.abs(lossy.image - unc.image)
    assert diff.mean() < 0.005 and diff.max() < 0.05


def test_rg1_non_square_is_padded_with_air(rg1):
    out, geo = square_and_resize(rg1["RG1_UNCR.dcm"].image, 224)
    assert out.shape == (224, 224) and out.dtype == np.float32
    assert (geo.height, geo.width, geo.side, geo.pad_top, geo.pad_left) == (1955, 1841, 1955, 0, 57)
    pad_cols = int(57 * 224 / 1955)  # whole output columns that are pure padding
    assert pad_cols >= 6
    assert np.all(out[:, :pad_cols] == 0) and np.all(out[:, -pad_cols:] == 0)
    assert out[:, pad_cols + 2 : -pad_cols - 2].min() > 0.05  # the image itself is not black


# --------------------------------------------------------------------------- windowing / LUTs


def write_12bit(path: Path, arr: np.ndarray, **attrs) -> Path:
    """:func:`write_native` with 12 stored bits in 16-bit words (BitsStored 12, HighBit 11), as
    CR and DX detectors write them; ``attrs`` add or override tags."""
    return write_native(path, arr, **{"BitsStored": 12, "HighBit": 11, **attrs})


@pytest.fixture()
def ramp16() -> np.ndarray:
    return np.array([[0, 50, 100, 149], [150, 151, 200, 4095]], dtype=np.uint16)


def test_rescale_then_linear_window_known_values(tmp_path, ramp16):
    path = write_12bit(
        tmp_path / "w.dcm",
        ramp16,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=100,
        WindowWidth=201,
    )
    r = read_dicom(path)
    x = ramp16.astype(np.float64) * 2 - 100  # modality values
    expected = np.clip((x - 99.5) / 200 + 0.5, 0, 1)
    np.testing.assert_allclose(r.image, expected, atol=1e-6)
    # literal spot checks: stored 100 -> HU 100 -> 0.5025; stored 0 -> 0; stored 150 -> 1
    assert r.image[0, 2] == pytest.approx(0.5025, abs=1e-6)
    assert r.image[0, 0] == 0.0 and r.image[1, 0] == 1.0
    assert any("window C=100 W=201 LINEAR" in n for n in r.notes)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_other_voi_functions_known_values(tmp_path, ramp16, function):
    path = write_12bit(
        tmp_path / "w.dcm",
        ramp16,
        WindowCenter=100,
        WindowWidth=200,
        VOILUTFunction=function,
    )
    x = ramp16.astype(np.float64)
    if function == "LINEAR_EXACT":
        expected = np.clip((x - 100) / 200 + 0.5, 0, 1)
    else:
        expected = 1 / (1 + np.exp(-4 * (x - 100) / 200))
    image = read_dicom(path).image
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert image[0, 2] == pytest.approx(0.5, abs=1e-6)


def test_multiple_windows_use_the_first_and_monochrome1_inverts(tmp_path, ramp16):
    path = write_12bit(
        tmp_path / "w.dcm",
        ramp16,
        PhotometricInterpretation="MONOCHROME1",
        WindowCenter=[100, 2000],
        WindowWidth=[201, 4000],
    )
    r = read_dicom(path)
    expected = 1 - np.clip((ramp16.astype(np.float64) - 99.5) / 200 + 0.5, 0, 1)
    np.testing.assert_allclose(r.image, expected, atol=1e-6)
    assert any("first of 2" in n for n in r.notes) and "MONOCHROME1 inverted" in r.notes


def test_window_matches_pydicom_apply_windowing_on_real_file(mr_small_reference):
    ds, raw = raw_pixels("MR_small.dcm")  # signed 16-bit, WC 600, WW 1600
    pyd = apply_windowing(raw, ds)
    y_min, y_max = -(2.0**15), 2.0**15 - 1  # pydicom's output range for signed 16-bit
    np.testing.assert_allclose(mr_small_reference, (pyd - y_min) / (y_max - y_min), atol=1e-5)


def test_rescale_without_window_uses_full_modality_range(tmp_path, ramp16):
    path = write_12bit(tmp_path / "r.dcm", ramp16, RescaleSlope=2, RescaleIntercept=-100)
    # stored range [0, 4095] -> modality range [-100, 8090]
    expected = (ramp16.astype(np.float64) * 2 - 100 + 100) / 8190
    np.testing.assert_allclose(read_dicom(path).image, expected, atol=1e-6)


def test_real_rescale_slope_file_jpeg2000_matches_uncompressed():
    rev, unc = read_dicom(pydicom_file("MR2_J2KR.dcm")), read_dicom(pydicom_file("MR2_UNCR.dcm"))
    assert (
        float(pydicom.dcmread(pydicom_file("MR2_UNCR.dcm"), stop_before_pixels=True).RescaleSlope)
        != 1
    )
    np.testing.assert_array_equal(rev.image, unc.image)


def test_no_voi_signed_and_monochrome1_full_stored_range(tmp_path):
    signed = np.array([[-32768, 0], [32767, -1]], dtype=np.int16)
    r = read_dicom(write_native(tmp_path / "s.dcm", signed))
    np.testing.assert_allclose(r.image, (signed.astype(np.float64) + 32768) / 65535, atol=1e-6)
    mono1 = np.array([[0, 1000], [4095, 2048]], dtype=np.uint16)
    r1 = read_dicom(
        write_12bit(
            tmp_path / "m1.dcm",
            mono1,
            PhotometricInterpretation="MONOCHROME1",
        )
    )
    np.testing.assert_allclose(r1.image, 1 - mono1 / 4095, atol=1e-6)


def test_values_beyond_bits_stored_use_actual_range(tmp_path, monkeypatch):
    """pydicom masks unused high bits itself, so simulate a decoder that does not."""
    arr = np.array([[10, 20], [30, 1010]], dtype=np.uint16)  # > 2**8 - 1
    path = write_native(tmp_path / "l.dcm", arr, BitsStored=8, HighBit=7)
    decoder = get_decoder(ExplicitVRLittleEndian)
    monkeypatch.setattr(decoder, "as_array", lambda *a, **k: (arr.copy(), {"samples_per_pixel": 1}))
    r = read_dicom(path)
    np.testing.assert_allclose(r.image, (arr - 10) / 1000, atol=1e-6)
    assert any("actual min/max" in n for n in r.notes)


def test_float_pixel_data_uses_actual_range(tmp_path):
    ds = _base_dataset(ExplicitVRLittleEndian, 2, 2, BitsAllocated=32)
    ds.FloatPixelData = np.array([[0.5, 1.5], [-2.0, 3.0]], dtype=np.float32).tobytes()
    ds.save_as(tmp_path / "f.dcm", enforce_file_format=True)
    r = read_dicom(tmp_path / "f.dcm")
    np.testing.assert_allclose(r.image, [[0.5, 0.7], [0.0, 1.0]], atol=1e-6)


def test_presentation_lut_inverse_and_invalid_window(tmp_path, ramp16):
    inv = read_dicom(write_12bit(tmp_path / "i.dcm", ramp16, PresentationLUTShape="INVERSE"))
    np.testing.assert_allclose(inv.image, 1 - ramp16 / 4095, atol=1e-6)
    bad = read_dicom(write_12bit(tmp_path / "b.dcm", ramp16, WindowCenter=100, WindowWidth=0))
    np.testing.assert_allclose(bad.image, ramp16 / 4095, atol=1e-6)
    assert any("invalid window" in n for n in bad.notes)


def test_voi_lut_sequence_real_file():
    ds, raw = raw_pixels("vlut_04.dcm")
    item = ds.VOILUTSequence[0]
    lut = np.asarray(item.LUTData, dtype=np.float64)
    assert item.LUTDescriptor[2] == 16
    r = read_dicom(pydicom_file("vlut_04.dcm"))
    np.testing.assert_allclose(r.image, lut[raw] / 65535, atol=1e-6)
    assert "VOI LUT Sequence applied" in r.notes


def test_modality_lut_sequence_real_file():
    ds, raw = raw_pixels("mlut_18.dcm")
    item = ds.ModalityLUTSequence[0]
    lut = np.asarray(item.LUTData, dtype=np.float64)
    first = item.LUTDescriptor[1]
    mapped = lut[np.clip(raw.astype(np.int64) - first, 0, len(lut) - 1)]
    expected = (mapped - lut.min()) / (lut.max() - lut.min())
    np.testing.assert_allclose(read_dicom(pydicom_file("mlut_18.dcm")).image, expected, atol=1e-6)


# --------------------------------------------------------------------------- frames / colour


def test_multi_frame_takes_first_frame_with_note():
    ds, frames = raw_pixels("emri_small.dcm")
    assert frames.shape[0] == 10
    for name in ("emri_small.dcm", "emri_small_RLE.dcm"):
        r = read_dicom(pydicom_file(name))
        assert r.meta.n_frames == 10
        assert "multi-frame: used frame 1 of 10" in r.notes
        np.testing.assert_allclose(r.image, frames[0] / (2.0**12 - 1), atol=1e-6)  # 12-bit, no VOI
    assert not np.array_equal(frames[0], frames[1])


def test_multi_frame_ybr_jpeg_baseline():
    r = read_dicom(pydicom_file("examples_ybr_color.dcm"))
    assert r.meta.transfer_syntax == JPEGBaseline8Bit and r.meta.n_frames == 30
    assert "multi-frame: used frame 1 of 30" in r.notes
    assert "YBR_FULL_422 converted to gray" in r.notes
    assert r.image.shape == (240, 320) and r.image.ndim == 2


def test_rgb_and_ybr_to_gray_known_values(tmp_path):
    _, rgb = raw_pixels("SC_rgb.dcm")
    luma = rgb.astype(np.float64) @ LUMA / 255.0
    r = read_dicom(pydicom_file("SC_rgb.dcm"))
    assert "RGB converted to gray" in r.notes
    np.testing.assert_allclose(r.image, luma, atol=1e-5)
    ybr = read_dicom(pydicom_file("SC_ybr_full_uncompressed.dcm"))
    assert "YBR_FULL converted to gray" in ybr.notes
    assert np.abs(ybr.image - luma).max() < 3 / 255  # YBR->RGB rounding only
    # 16-bit RGB normalises by its own bit depth
    pure = np.zeros((2, 2, 3), dtype=np.uint16)
    pure[0, 0] = (65535, 0, 0)
    pure[1, 1] = (65535, 65535, 65535)
    r16 = read_dicom(write_native(tmp_path / "rgb16.dcm", pure))
    np.testing.assert_allclose(r16.image, [[0.299, 0], [0, 1]], atol=1e-5)


def test_rle_and_j2k_color():
    rle = read_dicom(pydicom_file("SC_rgb_rle.dcm"))
    assert rle.meta.transfer_syntax == RLELossless
    np.testing.assert_array_equal(rle.image, read_dicom(pydicom_file("SC_rgb.dcm")).image)
    j2k = read_dicom(pydicom_file("US1_J2KR.dcm"))  # YBR_RCT, reversible
    assert "YBR_RCT converted to gray" in j2k.notes
    np.testing.assert_array_equal(j2k.image, read_dicom(pydicom_file("US1_UNCR.dcm")).image)


# --------------------------------------------------------------------------- fast path


def test_fast_path_taken_and_agrees_with_full_decode(rsna_like, monkeypatch):
    full = load_dicom_resized(rsna_like, 224, fast=False)
    fast = load_dicom_resized(rsna_like, 224)
    assert fast.fast_path and not full.fast_path
    assert fast.image.shape == full.image.shape == (224, 224)
    assert fast.image.dtype == full.image.dtype == np.uint8
    assert fast.geometry == full.geometry
    assert fast.meta == full.meta and fast.meta.age == 51
    assert fast.notes == [] and full.notes == []
    mad = np.abs(fast.image.astype(np.float64) - full.image.astype(np.float64)).mean() / 255
    assert mad < 1 / 255
    # the full path is read_dicom + square_and_resize + to_uint8, nothing else
    unit, _ = square_and_resize(read_dicom(rsna_like).image, 224)
    np.testing.assert_array_equal(full.image, to_uint8(unit))
    # and the fast path never touches pydicom's pixel decoders
    monkeypatch.setattr(dicom_mod, "get_decoder", _boom)
    assert load_dicom_resized(rsna_like, 224).fast_path


def test_fast_path_on_a_real_chest_radiograph(rg1, tmp_path):
    """RG1 (a real CR chest) as RSNA would ship it: 1024x1024 8-bit JPEG, ~100 KB."""
    im = rg1["RG1_UNCR.dcm"].image
    h, w = im.shape
    s = min(h, w)
    crop = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    img = to_uint8(cv2.resize(crop, (1024, 1024), interpolation=cv2.INTER_AREA))
    path = write_jpeg_baseline(tmp_path / "chest.dcm", img, quality=90)
    fast, full = load_dicom_resized(path, 224), load_dicom_resized(path, 224, fast=False)
    assert fast.fast_path
    assert np.abs(fast.image.astype(float) - full.image.astype(float)).mean() / 255 < 1 / 255


@pytest.mark.parametrize(
    "size, flag",
    [
        (224, cv2.IMREAD_REDUCED_GRAYSCALE_4),
        (256, cv2.IMREAD_REDUCED_GRAYSCALE_4),
        (100, cv2.IMREAD_REDUCED_GRAYSCALE_8),
        (512, cv2.IMREAD_REDUCED_GRAYSCALE_2),
        (600, cv2.IMREAD_GRAYSCALE),
    ],
)
def test_fast_path_decodes_at_the_smallest_scale_not_below_size(rsna_like, monkeypatch, size, flag):
    seen = []
    real = cv2.imdecode

    def spy(buf, flags):
        seen.append(flags & ~cv2.IMREAD_IGNORE_ORIENTATION)
        return real(buf, flags)

    monkeypatch.setattr(dicom_mod.cv2, "imdecode", spy)
    r = load_dicom_resized(rsna_like, size)
    assert r.fast_path and r.image.shape == (size, size)
    assert seen == [flag]


def _boom(*args, **kwargs):
    raise AssertionError("pydicom decoder used")


@pytest.mark.parametrize("shape, size", [((1000, 800), 224), ((768, 1024), 256), ((600, 600), 700)])
def test_fast_path_non_square_and_upscale(tmp_path, shape, size):
    path = write_jpeg_baseline(tmp_path / "r.dcm", radiograph_like(*shape, seed=1))
    fast, full = load_dicom_resized(path, size), load_dicom_resized(path, size, fast=False)
    assert fast.fast_path
    assert fast.geometry == full.geometry
    assert np.abs(fast.image.astype(float) - full.image.astype(float)).mean() / 255 < 1 / 255


def test_fast_path_declined_when_values_change(tmp_path):
    img = radiograph_like(256, 256)
    windowed = write_jpeg_baseline(tmp_path / "w.dcm", img, WindowCenter=100, WindowWidth=100)
    mono1 = write_jpeg_baseline(tmp_path / "m1.dcm", img, PhotometricInterpretation="MONOCHROME1")
    identity = write_jpeg_baseline(tmp_path / "id.dcm", img, WindowCenter=128, WindowWidth=256)
    w = load_dicom_resized(windowed, 64)
    assert not w.fast_path and any("window" in n for n in w.notes)
    m = load_dicom_resized(mono1, 64)
    plain = load_dicom_resized(identity, 64)
    assert not m.fast_path and plain.fast_path  # C=128 W=256 LINEAR is exactly x/255
    assert np.abs(m.image.astype(int) + plain.image.astype(int) - 255).max() <= 2


def test_fast_path_declines_color_jpeg_baseline():
    path = pydicom_file("SC_rgb_jpeg_dcmtk.dcm")  # pydicom has no MONOCHROME2 8-bit baseline file
    r = load_dicom_resized(path, 32)
    assert not r.fast_path
    np.testing.assert_array_equal(r.image, load_dicom_resized(path, 32, fast=False).image)


def test_fast_path_errors_fall_back(rsna_like, monkeypatch):
    reference = load_dicom_resized(rsna_like, 64, fast=False).image

    def broken(*args, **kwargs):
        raise cv2.error("simulated libjpeg failure")

    monkeypatch.setattr(dicom_mod.cv2, "imdecode", broken)
    r = load_dicom_resized(rsna_like, 64)
    assert not r.fast_path and any("fast path failed" in n for n in r.notes)
    np.testing.assert_array_equal(r.image, reference)
    monkeypatch.setattr(dicom_mod.cv2, "imdecode", lambda *a, **k: None)
    assert not load_dicom_resized(rsna_like, 64).fast_path


# --------------------------------------------------------------------------- squaring and boxes


def test_square_pad_known_answer():
    img = np.ones((2, 4), dtype=np.float32)
    out, geo = square_and_resize(img, 4)  # side == size: padding only
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[1:3] = 1
    np.testing.assert_array_equal(out, expected)
    assert (geo.side, geo.pad_top, geo.pad_left) == (4, 1, 0)
    odd = square_geometry(3, 6, 6)
    assert (odd.pad_top, odd.pad_left) == (1, 0)  # the odd pixel of padding goes below


def test_boxes_known_answers_and_roundtrip():
    geo = square_geometry(100, 200, 50)  # side 200, pad_top 50, scale 0.25
    assert geo.scale == 0.25
    assert geo.boxes_to_output([[10, 20, 40, 30]]) == [[2.5, 17.5, 10.0, 7.5]]
    tall = square_geometry(1024, 512, 224)  # pad_left 256
    assert tall.boxes_to_output([[0, 0, 512, 1024]]) == [[56.0, 0.0, 112.0, 224.0]]
    boxes = [[1.5, 2.0, 3.0, 4.0], [100, 0, 50, 20]]
    np.testing.assert_allclose(geo.boxes_to_original(geo.boxes_to_output(boxes)), boxes)
    assert geo.boxes_to_output([]) == []


def test_pixels_and_boxes_agree_after_resize():
    img = np.zeros((600, 300), dtype=np.float32)
    img[200:300, 100:160] = 1.0  # box x=100, y=200, w=60, h=100
    out, geo = square_and_resize(img, 60)  # side 600, pad_left 150, scale 0.1
    x, y, w, h = geo.boxes_to_output([[100, 200, 60, 100]])[0]
    assert [x, y, w, h] == pytest.approx([25, 20, 6, 10])
    inside = out[int(y) : int(y + h), int(x) : int(x + w)]
    assert np.allclose(inside, 1.0) and out.sum() == pytest.approx(inside.sum())


def test_square_and_resize_dtypes_and_interpolation():
    ramp = np.tile(np.linspace(0, 1, 8, dtype=np.float64), (8, 1))
    up, _ = square_and_resize(ramp, 16)
    assert up.dtype == np.float32 and up.shape == (16, 16)
    np.testing.assert_allclose(
        up, cv2.resize(ramp.astype(np.float32), (16, 16), interpolation=cv2.INTER_LINEAR)
    )
    u8, _ = square_and_resize((ramp * 255).astype(np.uint8), 4)
    assert u8.dtype == np.uint8
    with pytest.raises(ValueError):
        square_and_resize(np.zeros((2, 2, 2)), 4)


def test_to_uint8_known_values():
    x = np.array([-0.1, 0.0, 0.5, 0.49 / 255, 1.0, 1.2, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 128, 0, 255, 255, 0])


# --------------------------------------------------------------------------- header


def test_read_header_fields_without_decoding(tmp_path, monkeypatch):
    path = write_jpeg_baseline(
        tmp_path / "h.dcm",
        radiograph_like(64, 48),
        StudyDescription=SYNTHETIC_STUDY_DESCRIPTION,
    )
    monkeypatch.setattr(dicom_mod, "get_decoder", _boom)
    meta = read_header(path)
    assert meta == DicomMeta(
        patient_id="p-001",
        view_position="PA",
        sex="F",
        age=51,
        modality="CR",
        photometric="MONOCHROME2",
        transfer_syntax=JPEGBaseline8Bit,
        rows=64,
        columns=48,
        bits_stored=8,
        n_frames=1,
        is_synthetic=True,
    )


def test_read_header_rsna_age_private_marker_and_real_file(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "51" is not a valid AS, but it is what RSNA ships
        ds = _base_dataset(ExplicitVRLittleEndian, 2, 2, PatientAge="51")
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.add_new(SYNTHETIC_PRIVATE_CREATOR_TAG, "LO", SYNTHETIC_PRIVATE_CREATOR)
    ds.PixelData = bytes(4)
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    meta = read_header(tmp_path / "a.dcm")
    assert meta.age == 51 and meta.is_synthetic
    rg = read_header(pydicom_file("RG1_UNCR.dcm"))
    assert (rg.rows, rg.columns, rg.bits_stored, rg.photometric) == (1955, 1841, 15, "MONOCHROME1")
    assert rg.transfer_syntax == ExplicitVRLittleEndian and not rg.is_synthetic
    assert read_header(pydicom_file("emri_small.dcm")).n_frames == 10


@pytest.mark.parametrize(
    "value, years",
    [
        ("51", 51),
        ("051Y", 51),
        (" 7 ", 7),
        ("006M", 0),
        ("030M", 2),
        ("104W", 2),
        ("400D", 1),
        ("", None),
        (None, None),
        ("abc", None),
        ("51Q", None),
    ],
)
def test_parse_age(value, years):
    assert parse_age(value) == years


# --------------------------------------------------------------------------- bad files


def test_bad_files_raise_dicom_read_error(tmp_path, rsna_like):
    data = rsna_like.read_bytes()
    (tmp_path / "half.dcm").write_bytes(data[: len(data) // 2])
    assert_read_error(tmp_path / "half.dcm")
    assert_read_error(tmp_path / "half.dcm", load_dicom_resized)
    (tmp_path / "cut.dcm").write_bytes(data[:-2000])
    assert_read_error(tmp_path / "cut.dcm", load_dicom_resized)
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert_read_error(tmp_path / "empty.dcm", contains="empty")
    (tmp_path / "notes.dcm").write_text("patientId,x,y\n" * 50)
    assert_read_error(tmp_path / "notes.dcm", contains="not a DICOM")
    ok, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    (tmp_path / "image.dcm").write_bytes(png.tobytes())
    assert_read_error(tmp_path / "image.dcm", load_dicom_resized, contains="not a DICOM")
    assert_read_error(tmp_path / "missing.dcm", contains="not found")
    assert_read_error(tmp_path / "missing.dcm", read_header, contains="not found")
    assert_read_error(pydicom_file("MR_truncated.dcm"), contains="less than expected")


def test_no_pixel_data_and_not_an_image(tmp_path):
    assert_read_error(pydicom_file("test-SR.dcm"), contains="no Pixel Data")
    ds = _base_dataset(ExplicitVRLittleEndian, 4, 4)
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    assert_read_error(tmp_path / "nopix.dcm", load_dicom_resized, contains="no Pixel Data")
    zero = _base_dataset(
        ExplicitVRLittleEndian,
        0,
        4,
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
    )
    zero.PixelData = b""
    zero.save_as(tmp_path / "zero.dcm", enforce_file_format=True)
    assert_read_error(tmp_path / "zero.dcm", contains="zero-size")


def test_unsupported_transfer_syntax(tmp_path):
    ds = _base_dataset(
        MPEG2MPML, 4, 4, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0
    )
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=True)
    assert_read_error(tmp_path / "mpeg.dcm", contains="unsupported transfer syntax")


def test_missing_decoder_names_the_package(monkeypatch):
    path = pydicom_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    monkeypatch.setattr(get_decoder(JPEGLosslessSV1), "_available", {})
    assert_read_error(path, contains="pip install python-gdcm")
    assert_read_error(path, load_dicom_resized, contains="no decoder installed")
    assert read_header(path).transfer_syntax == JPEGLosslessSV1  # header still readable


def test_12bit_jpeg_extended_without_libjpeg_names_the_package():
    decoder = get_decoder(pydicom.uid.JPEGExtended12Bit)
    if "pylibjpeg" in decoder.available_plugins:
        pytest.skip("pylibjpeg-libjpeg is installed: 12-bit JPEG Extended decodes")
    assert_read_error(pydicom_file("JPGExtended.dcm"), contains="pylibjpeg-libjpeg")


def test_volume_shaped_decoder_output_is_rejected(monkeypatch):
    path = pydicom_file("MR_small.dcm")
    decoder = get_decoder(ExplicitVRLittleEndian)
    monkeypatch.setattr(
        decoder,
        "as_array",
        lambda *a, **k: (np.zeros((4, 64, 64), np.int16), {"samples_per_pixel": 1}),
    )
    assert_read_error(path, contains="not a 2-D image")


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize(
    "name",
    [
        "badVR.dcm",
        "UN_sequence.dcm",
        "meta_missing_tsyntax.dcm",
        "rtstruct.dcm",
        "no_meta.dcm",
        "emri_small_jpeg_2k_lossless_too_short.dcm",
        "JPEG2000-embedded-sequence-delimiter.dcm",
        "waveform_ecg.dcm",
        "liver.dcm",
        "rtdose.dcm",
        "OT-PAL-8-face.dcm",
        "OBXXXX1A_expb.dcm",
    ],
)
def test_odd_pydicom_files_give_an_image_or_dicom_read_error(name):
    path = pydicom_file(name)
    for fn in (read_dicom, lambda p: load_dicom_resized(p, 16)):
        try:
            r = fn(path)
        except DicomReadError as err:
            assert str(Path(path)) in str(err) and "\n" not in err.reason
        else:
            assert np.isfinite(r.image.astype(np.float32)).all()
            assert (
                r.image.ndim == 2
                and r.image.min() >= 0
                and r.image.max() <= 1 + 254 * (r.image.dtype == np.uint8)
            )


# --------------------------------------------------------------------------- PNG / JPEG


def test_load_image_file_gray_color_16bit(tmp_path):
    gray = radiograph_like(120, 80)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    r = load_image_file(tmp_path / "g.png", 32)
    assert r.image.shape == (32, 32) and r.image.dtype == np.uint8 and r.notes == []
    expected, geo = square_and_resize(gray.astype(np.float32) / 255, 32)
    np.testing.assert_array_equal(r.image, to_uint8(expected))
    assert r.geometry == geo and geo.pad_left == 20
    color = cv2.merge([gray, gray, gray])
    cv2.imwrite(str(tmp_path / "c.jpg"), color)
    rc = load_image_file(tmp_path / "c.jpg", 32)
    assert any("converted to gray" in n for n in rc.notes)
    assert np.abs(rc.image.astype(int) - r.image.astype(int)).mean() < 2
    cv2.imwrite(str(tmp_path / "w.png"), gray.astype(np.uint16) * 257)
    r16 = load_image_file(tmp_path / "w.png", 32)
    assert np.abs(r16.image.astype(int) - r.image.astype(int)).max() <= 1


def test_load_image_file_errors_and_dicom_delegation(tmp_path, rsna_like):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    assert_read_error(tmp_path / "bad.png", load_image_file, contains="not a readable")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert_read_error(tmp_path / "empty.jpg", load_image_file, contains="empty")
    assert_read_error(tmp_path / "nope.png", load_image_file, contains="not found")
    r = load_image_file(rsna_like, 32)
    assert r.fast_path and r.meta.patient_id == "p-001"


# --------------------------------------------------------------------------- unusable images


def _both_paths_reject(path: Path, contains: str) -> None:
    """The fast path and the full path reject ``path`` with the same reason."""
    fast = assert_read_error(path, lambda p: load_dicom_resized(p, 64), contains=contains)
    full = assert_read_error(path, lambda p: load_dicom_resized(p, 64, fast=False),
                             contains=contains)
    assert fast.reason == full.reason


def test_blank_images_are_rejected_by_every_reader(tmp_path):
    flat = np.full((64, 64), 128, np.uint8)
    _both_paths_reject(write_native(tmp_path / "flat.dcm", flat), "no usable contrast")
    assert_read_error(tmp_path / "flat.dcm", contains="no usable contrast")
    # JPEG Baseline (the fast path's syntax) and a window that maps everything to black
    _both_paths_reject(write_jpeg_baseline(tmp_path / "flat_jpeg.dcm", flat), "no usable contrast")
    hidden = write_jpeg_baseline(tmp_path / "hidden.dcm", radiograph_like(64, 64),
                                 WindowCenter=5000, WindowWidth=10)
    _both_paths_reject(hidden, "no usable contrast")
    cv2.imwrite(str(tmp_path / "flat.png"), flat)
    assert_read_error(tmp_path / "flat.png", load_image_file, contains="no usable contrast")


@pytest.mark.parametrize("slope", ["NaN", "1e400"])
def test_non_finite_modality_values_are_rejected(tmp_path, slope):
    ds = pydicom.dcmread(write_native(tmp_path / "ok.dcm", radiograph_like(64, 64)))
    ds.add_new(0x00281052, "DS", "0")  # RescaleIntercept
    ds.add_new(0x00281053, "DS", "1")  # RescaleSlope, replaced by the raw bytes below
    ds.save_as(tmp_path / "s.dcm")
    data = (tmp_path / "s.dcm").read_bytes()
    # RescaleSlope (0028,1053) DS with the value "1 " -> the literal slope (even length)
    old = b"\x28\x00\x53\x10DS\x02\x001 "
    value = slope.encode() + b" " * (len(slope) % 2)
    new = b"\x28\x00\x53\x10DS" + len(value).to_bytes(2, "little") + value
    assert data.count(old) == 1
    (tmp_path / "s.dcm").write_bytes(data.replace(old, new))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _both_paths_reject(tmp_path / "s.dcm", "non-finite pixel values")
        assert_read_error(tmp_path / "s.dcm", contains="Rescale Slope")


def test_all_nan_float_pixels_are_rejected(tmp_path):
    ds = _base_dataset(ExplicitVRLittleEndian, 64, 64, BitsAllocated=32)
    ds.FloatPixelData = np.full((64, 64), np.nan, dtype=np.float32).tobytes()
    ds.save_as(tmp_path / "nan.dcm", enforce_file_format=True)
    _both_paths_reject(tmp_path / "nan.dcm", "non-finite pixel values in the pixel data")
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((64, 64), np.nan, np.float32), mode="F").save(tmp_path / "nan.tiff")
    assert_read_error(tmp_path / "nan.tiff", load_image_file, contains="non-finite")


@pytest.mark.parametrize("width", ["0", "-10", "NaN"])
def test_unusable_window_falls_back_to_the_stored_range_on_both_paths(tmp_path, width):
    img = radiograph_like(128, 128)
    path = write_jpeg_baseline(tmp_path / "w.dcm", img, WindowCenter="128")
    data = path.read_bytes()
    path.write_bytes(data)  # WindowWidth written raw: pydicom refuses to encode NaN as DS
    ds = pydicom.dcmread(path)
    ds.add_new(0x00281051, "DS", "1")
    ds.save_as(path)
    value = width.encode() + b" " * (len(width) % 2)
    data = path.read_bytes()
    old = b"\x28\x00\x51\x10DS\x02\x001 "
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, b"\x28\x00\x51\x10DS" + len(value).to_bytes(2, "little")
                                  + value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = load_dicom_resized(path, 64, fast=False)
        fast = load_dicom_resized(path, 64)
        plain = load_dicom_resized(write_jpeg_baseline(tmp_path / "p.dcm", img), 64, fast=False)
    assert any("invalid window ignored" in n for n in full.notes)
    np.testing.assert_array_equal(full.image, plain.image)  # the Bits Stored range: 0..255
    assert np.abs(fast.image.astype(int) - full.image.astype(int)).mean() < 1


def test_images_below_the_minimum_side_are_rejected_by_the_resizing_readers(tmp_path):
    small = radiograph_like(16, 64)
    for name, path in (("native", write_native(tmp_path / "n.dcm", small)),
                       ("jpeg", write_jpeg_baseline(tmp_path / "j.dcm", small))):
        _both_paths_reject(path, f"64x16 pixels, below the minimum of {dicom_mod.MIN_IMAGE_SIDE}")
        assert read_dicom(path).image.shape == (16, 64), name  # the full-resolution reader keeps it
    cv2.imwrite(str(tmp_path / "one.png"), np.full((1, 1), 200, np.uint8))
    assert_read_error(tmp_path / "one.png", load_image_file, contains="1x1 pixels, below the minimum")
    ok = radiograph_like(32, 40)
    cv2.imwrite(str(tmp_path / "ok.png"), ok)
    assert load_image_file(tmp_path / "ok.png", 32).image.shape == (32, 32)


def _patch_jpeg_size(path: Path, out: Path, rows: int, cols: int, frame_too: bool) -> Path:
    """``path`` with Rows/Columns (and the JPEG frame header's size) claiming ``rows x cols``."""
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(out)
    if frame_too:
        data = bytearray(out.read_bytes())
        sof = data.find(b"\xff\xc0")
        data[sof + 5:sof + 9] = rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
        out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("rows, cols, frame_too, reason", [
    (60000, 60000, False, "60000x60000 pixels (Columns x Rows), above the 16384 px per side"),
    (60000, 60000, True, "above the 16384 px per side"),
    (1024, 1024, False, "the compressed frame is 64x64 pixels but the header says 1024x1024"),
    (8000, 8000, True, "far too few to encode them"),
    (64, 128, False, "the compressed frame is 64x64 pixels but the header says 128x64"),
])
def test_impossible_header_sizes_are_rejected_before_decoding(tmp_path, monkeypatch, rows, cols,
                                                              frame_too, reason):
    img = np.full((64, 64), 128, np.uint8)
    img[8:24, 8:40] = 20  # a tiny, well-compressed JPEG (about 1 KB)
    small = write_jpeg_baseline(tmp_path / "small.dcm", img)
    path = _patch_jpeg_size(small, tmp_path / "big.dcm", rows, cols, frame_too)
    assert path.stat().st_size < 3000
    decodes = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(dicom_mod.cv2, "imdecode",
                        lambda *a: decodes.append("cv2") or real_imdecode(*a))
    decoder = get_decoder(JPEGBaseline8Bit)
    real_as_array = decoder.as_array
    monkeypatch.setattr(decoder, "as_array",
                        lambda *a, **k: decodes.append("pydicom") or real_as_array(*a, **k))
    _both_paths_reject(path, reason)
    assert_read_error(path, contains=reason)
    assert decodes == []  # memory stays bounded: nothing was decoded
