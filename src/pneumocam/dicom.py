"""DICOM (and PNG/JPEG) -> gray radiograph in [0, 1]: dark air and lungs, bright bone.

Two entry points do the work:

- :func:`read_dicom`: full decode at the original resolution, float32 ``(H, W)`` in [0, 1].
- :func:`load_dicom_resized`: the per-file work of preprocessing, uint8 ``(size, size)``.

The grayscale pipeline follows the DICOM display chain (PS3.3 C.11):

1. decode the first frame only (pydicom's decoder plugins; multi-frame files get a note);
2. Modality LUT: *Modality LUT Sequence* or *Rescale Slope/Intercept*
   (:func:`pydicom.pixels.apply_modality_lut`);
3. VOI: the first *VOI LUT Sequence* item (:func:`pydicom.pixels.apply_voi`, scaled by
   its nominal output range), else the first *Window Center/Width* (LINEAR, LINEAR_EXACT
   or SIGMOID, computed here straight into [0, 1] in float32), else the full range that
   the modality transform can produce from *Bits Stored* bits (the stored range passed
   through the rescale, or the Modality LUT's own output extremes). This is the same for
   every file with the same header, so two images are never stretched differently; when
   pixel values fall outside that range (a header that lies) the actual min/max is used
   and a note says so;
4. MONOCHROME1 (and MONOCHROME2 with *Presentation LUT Shape* INVERSE) is inverted.

Colour data (RGB, YBR_*, PALETTE COLOR) becomes gray with the ITU-R BT.601 luma, which is
the Y of YBR_FULL (a note says so). Done here in float32 rather than with
:func:`pydicom.pixels.convert_color_space`, which only handles 8 bits and rounds Y to uint8.

Squaring: a non-square image is padded to a square, centred, with 0 (black, i.e. air);
never cropped, so no finding at an edge is lost. Resizing is OpenCV for arrays and boxes
alike: ``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging.
:class:`SquareGeometry` maps ``[x, y, w, h]`` boxes from original pixels to output pixels.

Fast path (the RSNA case: single-frame 8-bit MONOCHROME2 JPEG Baseline whose modality and
VOI transforms leave values unchanged): the JPEG frame is decoded at 1/2, 1/4 or 1/8 size
by libjpeg's DCT scaling (``cv2.IMREAD_REDUCED_GRAYSCALE_k``), never below the target
size, then area-resized. It agrees with the full path to well under one grey level on
average, and falls back to the full path whenever a precondition fails or it errors.
Its header comes from :mod:`pneumocam.dicom_scan` (a struct walk of the elements, 10x faster
than building a pydicom Dataset), which accepts only files it reads exactly as pydicom does
and hands every other file to pydicom.

Every failure to read a file raises :class:`~pneumocam.errors.DicomReadError` with the
file and a one-line reason (it goes to ``skipped.csv``); nothing else escapes for a bad file.

Files that decode but are not usable radiographs are rejected the same way, so that neither
preprocessing nor prediction gives a confident answer on a blank image:

- non-finite values after the modality transform (a Rescale Slope of NaN or 1e400, NaN float
  pixels);
- no usable contrast: the windowed image spans less than half a grey level (a blank image,
  or a window that maps everything to one value);
- a header size that cannot be right, checked *before* decoding so memory stays bounded:
  more than :data:`MAX_IMAGE_SIDE` pixels on a side, a JPEG / JPEG-LS / JPEG 2000 frame whose
  own size differs from Rows/Columns, or a Huffman-coded JPEG frame too short for the pixels
  the header claims (more than :data:`MAX_PIXELS_PER_JPEG_BYTE` pixels per byte);
- :func:`load_dicom_resized` and :func:`load_image_file` (the readers preprocessing and
  prediction use) also reject images under :data:`MIN_IMAGE_SIDE` pixels on a side;
  :func:`read_dicom` keeps small images (unit tests use 2x2 arrays).

A window that cannot be applied (Window Width <= 0, or below 1 for LINEAR; a non-finite
Window Center or Width) is not an error: it is ignored with a note and the default range
(the Bits Stored range through the modality transform) is used, by both paths alike.
"""

from __future__ import annotations

import re
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

from . import dicom_scan
from .errors import DicomReadError

__all__ = [
    "MAX_IMAGE_SIDE",
    "MAX_PIXELS_PER_JPEG_BYTE",
    "MIN_IMAGE_SIDE",
    "SYNTHETIC_PRIVATE_CREATOR",
    "SYNTHETIC_PRIVATE_CREATOR_TAG",
    "SYNTHETIC_STUDY_DESCRIPTION",
    "DicomMeta",
    "Radiograph",
    "SquareGeometry",
    "decoder_hint",
    "load_dicom_resized",
    "load_image_file",
    "parse_age",
    "read_dicom",
    "read_header",
    "square_and_resize",
    "square_geometry",
    "to_uint8",
]

#: The demo generator writes this StudyDescription; :attr:`DicomMeta.is_synthetic` is True for
#: any StudyDescription starting with "SYNTHETIC DEMO" (case-insensitive).
SYNTHETIC_STUDY_DESCRIPTION = "SYNTHETIC DEMO - pneumocam"
#: Alternative marker: a private creator element (0009,0010) with this value.
SYNTHETIC_PRIVATE_CREATOR_TAG = 0x00090010
SYNTHETIC_PRIVATE_CREATOR = "PNEUMOCAM SYNTHETIC DEMO"

#: Smallest side (pixels) of an image the resizing readers accept: below it there is no
#: radiograph to speak of (a 1x1 PNG, a thumbnail), only a confident answer on nothing.
MIN_IMAGE_SIDE = 32
#: Largest side (pixels) accepted: real radiographs are at most about 4300 px; a header that
#: claims more is corrupt or hostile, and decoding it could take tens of GB.
MAX_IMAGE_SIDE = 16384
#: A Huffman-coded JPEG needs at least 2 bits per 8x8 block (lossless: 1 bit per pixel), i.e.
#: at most 256 pixels per byte; 4x that margin still flags a frame too short for its header.
MAX_PIXELS_PER_JPEG_BYTE = 1024
# Half a grey level: an image spanning less than this after windowing is blank.
_MIN_CONTRAST = 0.5 / 255
# Huffman-coded JPEG transfer syntaxes (Baseline, Extended, Lossless, Lossless SV1).
_HUFFMAN_JPEG = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                           "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"})
# Start-of-frame markers of JPEG (SOF0-15 but DHT, JPG, DAC) and JPEG-LS (SOF55).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF, 0xF7})

# BT.601 luma weights (R, G, B): the Y of YBR_FULL, what a gray radiograph would have been.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_HEADER_TAGS = [
    "PatientID",
    "ViewPosition",
    "PatientSex",
    "PatientAge",
    "Modality",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsStored",
    "NumberOfFrames",
    "StudyDescription",
    SYNTHETIC_PRIVATE_CREATOR_TAG,
]

# Which pip package brings a decoder for each compressed transfer syntax (pydicom plugins).
_DECODER_HINTS = {
    "1.2.840.10008.1.2.4.50": "pillow (or python-gdcm)",  # JPEG Baseline 8-bit
    "1.2.840.10008.1.2.4.51": "pillow (or python-gdcm)",  # JPEG Extended 12-bit
    "1.2.840.10008.1.2.4.57": "python-gdcm (or pylibjpeg + pylibjpeg-libjpeg)",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "python-gdcm (or pylibjpeg + pylibjpeg-libjpeg)",  # Lossless SV1
    "1.2.840.10008.1.2.4.80": "python-gdcm (or pyjpegls)",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "python-gdcm (or pyjpegls)",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg + pylibjpeg-openjpeg (or python-gdcm)",  # J2K lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg + pylibjpeg-openjpeg (or python-gdcm)",  # J2K
    "1.2.840.10008.1.2.4.201": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg + pylibjpeg-rle (pydicom's own RLE decoder should work)",
}

_REDUCED_FLAGS = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


# --------------------------------------------------------------------------- result types


@dataclass
class DicomMeta:
    """Header fields the project uses; ``None`` where the file lacks (or garbles) them."""

    patient_id: str | None = None
    view_position: str | None = None  # RSNA: "AP" | "PA"
    sex: str | None = None  # "M" | "F" | "O"
    age: int | None = None  # years, parsed from PatientAge ("51", "051Y", "006M" -> 0)
    modality: str | None = None
    photometric: str | None = None
    transfer_syntax: str | None = None  # the UID, e.g. "1.2.840.10008.1.2.4.50"
    rows: int | None = None
    columns: int | None = None
    bits_stored: int | None = None
    n_frames: int = 1
    is_synthetic: bool = False  # the pneumocam demo generator's marker is present


@dataclass
class SquareGeometry:
    """How an ``(height, width)`` image became ``(size, size)``: pad to ``side``, then resize.

    Original pixel ``(x, y)`` (pixel-edge coordinates, as RSNA boxes use) maps to
    ``((x + pad_left) * scale, (y + pad_top) * scale)`` with ``scale = size / side``.
    """

    height: int
    width: int
    side: int
    pad_top: int
    pad_left: int
    size: int

    @property
    def scale(self) -> float:
        """Output pixels per original pixel."""
        return self.size / self.side

    def boxes_to_output(self, boxes: list[list[float]]) -> list[list[float]]:
        """Map ``[x, y, w, h]`` boxes (original pixels, x/y = upper-left) to output pixels."""
        s = self.scale
        return [
            [
                (float(x) + self.pad_left) * s,
                (float(y) + self.pad_top) * s,
                float(w) * s,
                float(h) * s,
            ]
            for x, y, w, h in boxes
        ]

    def boxes_to_original(self, boxes: list[list[float]]) -> list[list[float]]:
        """Inverse of :meth:`boxes_to_output`: output-pixel ``[x, y, w, h]`` -> original pixels."""
        s = self.scale
        return [
            [float(x) / s - self.pad_left, float(y) / s - self.pad_top, float(w) / s, float(h) / s]
            for x, y, w, h in boxes
        ]


@dataclass
class Radiograph:
    """A decoded radiograph.

    ``image`` is float32 ``(H, W)`` in [0, 1] from :func:`read_dicom`, uint8 ``(size, size)``
    from :func:`load_dicom_resized` / :func:`load_image_file`; 0 is black (air), 1/255 white.
    """

    image: np.ndarray
    meta: DicomMeta
    notes: list[str] = field(default_factory=list)
    geometry: SquareGeometry | None = None
    fast_path: bool = False


# --------------------------------------------------------------------------- small helpers


def _one_line(text: object, limit: int = 200) -> str:
    """Collapse whitespace so a reason fits one CSV cell; cut long messages."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _exc_reason(exc: BaseException) -> str:
    msg = _one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _Unusable(ValueError):
    """Pixels that decode but make no radiograph (non-finite values); the message is the reason."""


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` a JPEG / JPEG-LS (SOF) or JPEG 2000 (SIZ) codestream declares.

    Reads marker segments only, no entropy-coded data; None when the stream is of another
    kind or the size is not found before the first scan.
    """
    frame = bytes(frame[:65536])  # the frame header is near the start
    if frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # J2K: SOC then SIZ
        xsiz, ysiz, xo, yo = (int.from_bytes(frame[i:i + 4], "big") for i in (8, 12, 16, 20))
        return ysiz - yo, xsiz - xo
    if frame[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(frame)
    while i + 4 <= n:
        if frame[i] != 0xFF:
            return None
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            i += 2
            continue
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            return (int.from_bytes(frame[i + 5:i + 7], "big"),
                    int.from_bytes(frame[i + 7:i + 9], "big"))
        if marker == 0xDA:  # a scan before any frame header
            return None
        i += 2 + int.from_bytes(frame[i + 2:i + 4], "big")
    return None


def _size_problem(rows: int, cols: int, transfer_syntax: str | None,
                  frame: bytes | None) -> str | None:
    """Why a header size cannot be decoded safely (checked before decoding), or None.

    ``frame``: the first encapsulated frame (None for native data or when unknown).
    """
    if rows > MAX_IMAGE_SIDE or cols > MAX_IMAGE_SIDE:
        return (f"header claims {cols}x{rows} pixels (Columns x Rows), above the "
                f"{MAX_IMAGE_SIDE} px per side a radiograph can have; corrupt header")
    if frame is None:
        return None
    declared = _codestream_size(frame)
    if declared is not None and declared[0] and declared != (rows, cols):
        return (f"the compressed frame is {declared[1]}x{declared[0]} pixels but the header "
                f"says {cols}x{rows} (Columns x Rows); corrupt header or frame")
    if str(transfer_syntax) in _HUFFMAN_JPEG and rows * cols > MAX_PIXELS_PER_JPEG_BYTE * len(frame):
        return (f"header claims {cols}x{rows} pixels but the JPEG frame has only {len(frame)} "
                f"bytes, far too few to encode them; corrupt or truncated file")
    return None


def _check_min_side(path: Path, rows: int | None, cols: int | None) -> None:
    """Reject an image too small to be a radiograph (the resizing readers' rule)."""
    if rows and cols and (rows < MIN_IMAGE_SIDE or cols < MIN_IMAGE_SIDE):
        raise DicomReadError(
            path, f"image is {cols}x{rows} pixels, below the minimum of {MIN_IMAGE_SIDE} px per "
                  f"side; not a usable radiograph")


def _check_contrast(path: Path, image01: np.ndarray) -> None:
    """Reject an image that is (nearly) one value after windowing: nothing to classify."""
    lo, hi = float(image01.min()), float(image01.max())
    if hi - lo < _MIN_CONTRAST:
        raise DicomReadError(
            path, f"no usable contrast: every pixel is {lo:.3f} on the 0-1 scale after "
                  f"windowing (a blank image, or a window that hides everything)")


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def parse_age(value: Any) -> int | None:
    """PatientAge -> whole years. ``"51"``, ``"051Y"`` -> 51; ``"006M"`` -> 0; junk -> None.

    Values are kept as written (RSNA has a handful of implausible ages above 120).
    """
    s = _str_or_none(value)
    if s is None:
        return None
    m = re.fullmatch(r"(\d{1,3})\s*([DWMY]?)", s.upper())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"": n, "Y": n, "M": n // 12, "W": n // 52, "D": n // 365}[unit]


def decoder_hint(transfer_syntax: str) -> str:
    """Which package(s) to ``pip install`` to decode ``transfer_syntax`` (a UID string)."""
    return _DECODER_HINTS.get(str(transfer_syntax), "a pydicom decoding plugin for it")


# Element tags resolved once: a lookup by tag skips pydicom's keyword -> tag search, which
# costs more than the value itself when preprocessing reads a dozen fields from 26,684 files.
_TAG = {
    keyword: tag_for_keyword(keyword)
    for keyword in (
        "PatientID", "ViewPosition", "PatientSex", "PatientAge", "Modality",
        "PhotometricInterpretation", "Rows", "Columns", "BitsStored", "BitsAllocated",
        "SamplesPerPixel", "PixelRepresentation", "NumberOfFrames", "StudyDescription",
        "PixelData",
    )
}


_TAG_CHARSET = tag_for_keyword("SpecificCharacterSet")


def _value(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)`` for the keywords in ``_TAG``, by tag (None when absent)."""
    elem = ds.get(_TAG[keyword])
    return None if elem is None else elem.value


def _transfer_syntax(ds: Dataset) -> UID | None:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return UID(str(ts)) if ts else None


def _n_frames(ds: Dataset) -> int:
    n = _int_or_none(_value(ds, "NumberOfFrames"))
    return n if n and n > 0 else 1


def _meta_from_values(value: Callable[[str], Any], transfer_syntax: str | None,
                      private_creator: Any) -> DicomMeta:
    """The header fields from raw values: ``value(keyword)`` (None when absent), as pydicom or
    :mod:`pneumocam.dicom_scan` read them. The one place both readers' values become fields."""
    frames = _int_or_none(value("NumberOfFrames"))
    description = _str_or_none(value("StudyDescription")) or ""
    return DicomMeta(
        patient_id=_str_or_none(value("PatientID")),
        view_position=(_str_or_none(value("ViewPosition")) or "").upper() or None,
        sex=(_str_or_none(value("PatientSex")) or "").upper() or None,
        age=parse_age(value("PatientAge")),
        modality=_str_or_none(value("Modality")),
        photometric=_str_or_none(value("PhotometricInterpretation")),
        transfer_syntax=transfer_syntax,
        rows=_int_or_none(value("Rows")),
        columns=_int_or_none(value("Columns")),
        bits_stored=_int_or_none(value("BitsStored")),
        n_frames=frames if frames and frames > 0 else 1,
        is_synthetic=description.upper().startswith("SYNTHETIC DEMO")
        or _str_or_none(private_creator) == SYNTHETIC_PRIVATE_CREATOR,
    )


def _meta_from_dataset(ds: Dataset) -> DicomMeta:
    ts = _transfer_syntax(ds)
    creator = ds.get(SYNTHETIC_PRIVATE_CREATOR_TAG)
    return _meta_from_values(lambda keyword: _value(ds, keyword), str(ts) if ts else None,
                             None if creator is None else creator.value)


@contextmanager
def _warnings_to_notes(notes: list[str]) -> Iterator[list[warnings.WarningMessage]]:
    """Turn warnings raised inside the block into one-line notes (not 26,684 stderr lines)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield caught
        finally:
            for w in caught:
                note = f"warning: {_one_line(w.message, 120)}"
                if note not in notes:
                    notes.append(note)


def _dcmread(path: Path, notes: list[str] | None = None, **kwargs: Any) -> tuple[Dataset, bool]:
    """``pydicom.dcmread`` with every failure turned into a :class:`DicomReadError`.

    pydicom's warnings (e.g. "End of file reached before delimiter") go to ``notes``; the
    bool is True when the file ended early. A file without a transfer syntax gets the one
    it was actually read with.
    """
    notes = [] if notes is None else notes
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise DicomReadError(path, "file not found")
    if info.st_size == 0:
        raise DicomReadError(path, "empty file (0 bytes)")
    with _warnings_to_notes(notes) as caught:
        ds = _dcmread_or_force(path, **kwargs)
    truncated = any("end of file" in str(w.message).lower() for w in caught)
    if _transfer_syntax(ds) is None and ds.original_encoding[0] is not None:
        implicit, little = ds.original_encoding
        ts = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
        notes.append(f"no Transfer Syntax UID in file meta: assumed {ts.name}")
    return ds, truncated


def _dcmread_or_force(path: Path, **kwargs: Any) -> Dataset:
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        pass  # no 'DICM' preamble: some real files lack it, so try once more, forced
    except Exception as exc:
        raise DicomReadError(path, f"unreadable DICOM ({_exc_reason(exc)})") from exc
    try:
        ds = pydicom.dcmread(path, force=True, **kwargs)
    except Exception as exc:
        raise DicomReadError(path, "not a DICOM file (no 'DICM' marker)") from exc
    # A forced read of arbitrary bytes "succeeds" with junk: accept only what looks like an image.
    if (
        ds.get("Rows") is None
        or ds.get("Columns") is None
        or ds.get("PhotometricInterpretation") is None
    ):
        raise DicomReadError(path, "not a DICOM image (no 'DICM' marker, no image attributes)")
    return ds


# --------------------------------------------------------------------------- header


def read_header(path: str | Path) -> DicomMeta:
    """Header fields without decoding (or even reading) the pixel data.

    Raises:
        DicomReadError: missing, empty or non-DICOM file.
    """
    path = Path(path)
    ds, _ = _dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    try:
        return _meta_from_dataset(ds)
    except Exception as exc:  # a malformed element value
        raise DicomReadError(path, f"bad header ({_exc_reason(exc)})") from exc


# --------------------------------------------------------------------------- value pipeline


def _stored_range(ds: Dataset) -> tuple[float, float]:
    """The range of stored values that *Bits Stored* and *Pixel Representation* allow."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _lut_values(item: Dataset, ds: Dataset) -> np.ndarray:
    """The LUT Data of a Modality/VOI LUT item as an int array (US or little/big-endian OW)."""
    elem = item["LUTData"]
    if elem.VR == "OW" or isinstance(elem.value, bytes | bytearray):
        little = ds.original_encoding[1]
        little = True if little is None else little
        return np.frombuffer(elem.value, dtype="<u2" if little else ">u2").astype(np.int64)
    values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
    return np.asarray(values, dtype=np.int64)


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """Every value the modality transform can output, from the full stored range."""
    if ds.get("ModalityLUTSequence"):
        lut = _lut_values(ds.ModalityLUTSequence[0], ds)
        return float(lut.min()), float(lut.max())
    lo, hi = _stored_range(ds)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, icpt = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + icpt, hi * slope + icpt))
    return lo, hi


def _first(value: Any) -> float | None:
    """First value of a (possibly multi-valued) DS element, or None when absent/garbage."""
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2-3 windowing with output range [0, 1], float32."""
    x = x.astype(np.float32, copy=False)
    c, w = np.float32(center), np.float32(width)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflow -> inf -> 0, the correct limit
            return np.float32(1.0) / (np.float32(1.0) + np.exp(np.float32(-4.0) * (x - c) / w))
    if function == "LINEAR_EXACT":
        out = (x - c) / w + np.float32(0.5)
    elif width == 1:  # LINEAR with width 1 is a threshold
        return (x > c - np.float32(0.5)).astype(np.float32)
    else:  # LINEAR
        out = (x - (c - np.float32(0.5))) / (w - np.float32(1.0)) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _should_invert(ds: Dataset) -> bool:
    pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    return pi == "MONOCHROME1" or (pi == "MONOCHROME2" and shape == "INVERSE")


def _gray_to_unit(arr: np.ndarray, ds: Dataset, notes: list[str] | None = None) -> np.ndarray:
    """Stored grayscale values -> float32 in [0, 1], dark = air (modality, VOI, inversion).

    Works on any array of stored values (a frame, or ``np.arange(256)`` to test whether
    the chain is the identity for the fast path).
    """
    notes = [] if notes is None else notes
    has_mlut = bool(ds.get("ModalityLUTSequence"))
    has_rescale = "RescaleSlope" in ds and "RescaleIntercept" in ds
    x = apply_modality_lut(arr, ds) if (has_mlut or has_rescale) else arr
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        what = ("after the modality transform (Rescale Slope "
                f"{ds.get('RescaleSlope')!s}, Intercept {ds.get('RescaleIntercept')!s})"
                if has_rescale else "in the pixel data" if not has_mlut
                else "after the Modality LUT")
        raise _Unusable(f"non-finite pixel values {what}")

    voi_items = ds.get("VOILUTSequence")
    center = _first(ds.get("WindowCenter"))
    width = _first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    valid_window = (
        center is not None
        and width is not None
        and function in ("LINEAR", "LINEAR_EXACT", "SIGMOID")
        and (width >= 1 if function == "LINEAR" else width > 0)
    )

    if voi_items and "LUTDescriptor" in voi_items[0] and "LUTData" in voi_items[0]:
        item = voi_items[0]
        # The LUT's input is integer modality output; round a rescaled (float) input.
        xi = x if np.issubdtype(x.dtype, np.integer) else np.rint(x).astype(np.int64)
        y = apply_voi(xi, ds, index=0)
        top = max(2.0 ** int(item.LUTDescriptor[2]) - 1, float(_lut_values(item, ds).max()))
        out = y.astype(np.float32) / np.float32(top)
        notes.append("VOI LUT Sequence applied")
    elif valid_window:
        out = _window(x, center, width, function)
        vm = ds["WindowCenter"].VM
        notes.append(
            f"window C={center:g} W={width:g} {function} applied"
            + (f" (first of {vm})" if vm > 1 else "")
        )
    else:
        if "WindowCenter" in ds or "WindowWidth" in ds:  # zero, negative or non-finite
            notes.append("invalid window ignored; used full range")
        amin, amax = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if np.issubdtype(arr.dtype, np.floating):  # Float Pixel Data: no Bits Stored range
            lo, hi = amin, amax
            notes.append("float pixel data: used actual min/max")
        else:
            lo, hi = _modality_range(ds)
            if amin < lo or amax > hi:  # decoder output and header disagree: trust the data
                lo, hi = amin, amax
                notes.append("pixel values outside the Bits Stored range; used actual min/max")
        scale = np.float32(1.0 / (hi - lo)) if hi > lo else np.float32(0.0)
        out = (x.astype(np.float32) - np.float32(lo)) * scale
        np.clip(out, 0.0, 1.0, out=out)

    if _should_invert(ds):
        out = np.float32(1.0) - out
        pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        notes.append(
            "MONOCHROME1 inverted" if pi == "MONOCHROME1" else "Presentation LUT INVERSE applied"
        )
    return out.astype(np.float32, copy=False)


def _color_to_unit(arr: np.ndarray, bits: int) -> np.ndarray:
    """(H, W, 3) RGB of ``bits`` bits -> float32 gray luma in [0, 1]."""
    gray = arr.astype(np.float32) @ _LUMA
    gray *= np.float32(1.0 / (2.0**bits - 1))
    return np.clip(gray, 0.0, 1.0, out=gray)


# --------------------------------------------------------------------------- full path


def _preferred_plugin(ts: UID, ds: Dataset, available: tuple[str, ...] | list[str]) -> str:
    """The pydicom decoding plugin to try first ("" = pydicom's own order).

    Grayscale JPEG Baseline: Pillow. pydicom tries GDCM first, which gives the same pixels
    (identical on the demo data) about 4x slower (8 ms against 2 ms for a 1024x1024 image).
    """
    if ts == JPEGBaseline8Bit and "pillow" in available and _value(ds, "SamplesPerPixel") in (None, 1):
        return "pillow"
    return ""


def _decode_first_frame(
    ds: Dataset, path: Path, truncated: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """First frame as decoded by pydicom (YBR already converted to RGB), and its properties."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if truncated:
            raise DicomReadError(path, "truncated file (Pixel Data incomplete or missing)")
        what = _str_or_none(ds.get("Modality")) or "unknown"
        raise DicomReadError(path, f"no Pixel Data (not an image; Modality {what})")
    ts = _transfer_syntax(ds)
    if ts is None:
        raise DicomReadError(path, "no Transfer Syntax UID in the file meta; cannot decode")
    rows, cols = _int_or_none(ds.get("Rows")), _int_or_none(ds.get("Columns"))
    if not rows or not cols:
        raise DicomReadError(
            path, f"zero-size or missing image dimensions (Rows={rows}, Columns={cols})"
        )
    frame = None
    if ts.is_encapsulated and "PixelData" in ds:
        try:
            frame = get_frame(ds.PixelData, 0, number_of_frames=_n_frames(ds))
        except Exception:  # odd fragment layouts: the decoder reports them
            frame = None
    problem = _size_problem(rows, cols, str(ts), frame)
    if problem is not None:
        raise DicomReadError(path, problem)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise DicomReadError(path, f"unsupported transfer syntax {ts.name} ({ts})") from exc
    if not decoder.is_available:
        raise DicomReadError(
            path, f"no decoder installed for {ts.name}: pip install {decoder_hint(ts)}"
        )
    try:
        options = as_pixel_options(ds)
        plugin = _preferred_plugin(ts, ds, decoder.available_plugins)
        try:
            arr, props = decoder.as_array(ds, index=0, decoding_plugin=plugin, **options)
        except Exception:
            if not plugin:
                raise
            arr, props = decoder.as_array(ds, index=0, **options)  # every plugin, pydicom's order
    except Exception as exc:
        bits = _int_or_none(ds.get("BitsStored")) or 8
        if ts == JPEGExtended12Bit and bits > 8 and "pylibjpeg" not in decoder.available_plugins:
            reason = (
                f"no decoder installed for 12-bit {ts.name} (Pillow/GDCM do 8-bit only): "
                "pip install pylibjpeg pylibjpeg-libjpeg"
            )
        else:
            prefix = "truncated file: " if truncated else ""
            reason = f"{prefix}cannot decode {ts.name} pixel data ({_exc_reason(exc)})"
        raise DicomReadError(path, reason) from exc
    return arr, props


def _to_unit_image(
    ds: Dataset, path: Path, notes: list[str], truncated: bool = False
) -> np.ndarray:
    """Decode + display chain: float32 (H, W) in [0, 1], dark lungs."""
    with _warnings_to_notes(notes):
        return _to_unit_image_inner(ds, path, notes, truncated)


def _to_unit_image_inner(ds: Dataset, path: Path, notes: list[str], truncated: bool) -> np.ndarray:
    arr, props = _decode_first_frame(ds, path, truncated)
    n = _n_frames(ds)
    if n > 1:
        notes.append(f"multi-frame: used frame 1 of {n}")
    if arr.size == 0:
        raise DicomReadError(path, "zero-size pixel array")

    header_pi = (_str_or_none(ds.get("PhotometricInterpretation")) or "").upper()
    pi = str(
        getattr(
            props.get("photometric_interpretation"),
            "value",
            props.get("photometric_interpretation") or header_pi,
        )
    ).upper()
    spp = int(props.get("samples_per_pixel") or ds.get("SamplesPerPixel") or 1)
    bits = int(props.get("bits_stored") or ds.get("BitsStored") or 8)

    try:
        if spp == 1:
            if arr.ndim != 2:
                raise DicomReadError(path, f"not a 2-D image: frame shape {arr.shape}")
            if pi in ("MONOCHROME1", "MONOCHROME2"):
                image = _gray_to_unit(arr, ds, notes)
            elif pi == "PALETTE COLOR":
                rgb = apply_color_lut(arr, ds)
                # 16-bit LUT entries holding 8-bit values are a known quirk (PS3.3 C.7.6.3.1.5)
                image = _color_to_unit(rgb, 8 if rgb.max(initial=0) <= 255 else 16)
                notes.append("PALETTE COLOR converted to gray")
            else:
                raise DicomReadError(
                    path, f"unsupported Photometric Interpretation {pi!r} for 1 sample"
                )
        elif spp == 3:
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise DicomReadError(path, f"not a 2-D colour image: frame shape {arr.shape}")
            if pi == "RGB":
                image = _color_to_unit(arr, bits)
            elif pi.startswith("YBR"):  # decoder left it as YCbCr: Y is the gray
                image = arr[..., 0].astype(np.float32) * np.float32(1.0 / (2.0**bits - 1))
                np.clip(image, 0.0, 1.0, out=image)
            else:
                raise DicomReadError(
                    path, f"unsupported Photometric Interpretation {pi!r} for 3 samples"
                )
            notes.append(f"{header_pi or pi} converted to gray")
        else:
            raise DicomReadError(path, f"unsupported Samples per Pixel {spp}")
    except DicomReadError:
        raise
    except _Unusable as exc:
        raise DicomReadError(path, str(exc)) from exc
    except Exception as exc:  # malformed LUTs, windows, palette...
        raise DicomReadError(
            path, f"cannot apply LUT/colour transforms ({_exc_reason(exc)})"
        ) from exc
    _check_contrast(path, image)
    return np.ascontiguousarray(image, dtype=np.float32)


def read_dicom(path: str | Path) -> Radiograph:
    """Full decode at the original resolution.

    Returns:
        :class:`Radiograph` with ``image`` float32 ``(Rows, Columns)`` in [0, 1] (0 = air),
        ``geometry=None``, ``fast_path=False`` and notes on anything unusual.

    Raises:
        DicomReadError: for any file that cannot become a radiograph.
    """
    path = Path(path)
    notes: list[str] = []
    ds, truncated = _dcmread(path, notes)
    image = _to_unit_image(ds, path, notes, truncated)
    return Radiograph(image=image, meta=_safe_meta(ds, path), notes=notes)


def _safe_meta(ds: Dataset, path: Path) -> DicomMeta:
    try:
        return _meta_from_dataset(ds)
    except Exception as exc:
        raise DicomReadError(path, f"bad header ({_exc_reason(exc)})") from exc


# --------------------------------------------------------------------------- geometry


def square_geometry(height: int, width: int, size: int) -> SquareGeometry:
    """The padding and scale that turn ``(height, width)`` into ``(size, size)``."""
    if height < 1 or width < 1 or size < 1:
        raise ValueError(f"need positive sizes, got height={height} width={width} size={size}")
    side = max(height, width)
    return SquareGeometry(
        height=height,
        width=width,
        side=side,
        pad_top=(side - height) // 2,
        pad_left=(side - width) // 2,
        size=size,
    )


def _resize_square(square: np.ndarray, size: int) -> np.ndarray:
    side = square.shape[0]
    if side == size:
        return square.copy()
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def _pad(image: np.ndarray, geo: SquareGeometry) -> np.ndarray:
    if geo.height == geo.width:
        return image
    square = np.zeros((geo.side, geo.side), dtype=image.dtype)
    square[geo.pad_top : geo.pad_top + geo.height, geo.pad_left : geo.pad_left + geo.width] = image
    return square


def square_and_resize(image: np.ndarray, size: int) -> tuple[np.ndarray, SquareGeometry]:
    """Pad ``(H, W)`` to a centred square with 0 (air), then resize to ``(size, size)``.

    Args:
        image: 2-D float array (float32 out) or uint8 (uint8 out); values are not changed
            except by interpolation.
        size: output side in pixels.

    Returns:
        ``(out, geometry)``: ``out`` is ``(size, size)``; ``geometry`` maps boxes the same way.
        OpenCV ``INTER_AREA`` shrinks, ``INTER_LINEAR`` enlarges.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = image.astype(np.float32, copy=False)
    geo = square_geometry(image.shape[0], image.shape[1], int(size))
    return _resize_square(_pad(image, geo), geo.size), geo


def to_uint8(image01: np.ndarray) -> np.ndarray:
    """``round(clip(x, 0, 1) * 255)`` as uint8 (NaN -> 0); same shape."""
    x = np.nan_to_num(np.asarray(image01, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(x, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


# --------------------------------------------------------------------------- fast path


_VALUE_TRANSFORM_TAGS = tuple(
    tag_for_keyword(keyword)
    for keyword in (
        "ModalityLUTSequence", "RescaleSlope", "RescaleIntercept", "VOILUTSequence",
        "WindowCenter", "WindowWidth", "VOILUTFunction", "PresentationLUTShape",
    )
)


def _rsna_like_pixels(
    meta: DicomMeta, samples_per_pixel: int | None, bits_allocated: int | None,
    pixel_representation: int | None,
) -> bool:
    """One 8-bit unsigned MONOCHROME2 JPEG Baseline frame of known size (what RSNA ships)."""
    return bool(
        meta.transfer_syntax == JPEGBaseline8Bit
        and (meta.photometric or "").upper() == "MONOCHROME2"
        and meta.bits_stored == 8
        and meta.n_frames == 1
        and meta.rows
        and meta.columns
        # out-of-range sizes go to the full path, which rejects them with the reason
        and MIN_IMAGE_SIDE <= meta.rows <= MAX_IMAGE_SIDE
        and MIN_IMAGE_SIDE <= meta.columns <= MAX_IMAGE_SIDE
        and samples_per_pixel in (None, 1)
        and bits_allocated == 8
        and pixel_representation in (None, 0)
    )


def _fast_path_ok(ds: Dataset, meta: DicomMeta) -> bool:
    """RSNA-like pixels (:func:`_rsna_like_pixels`) whose LUT chain is the identity.

    ``meta`` is ``_meta_from_dataset(ds)``: its fields are not looked up twice.
    """
    if _TAG["PixelData"] not in ds or not _rsna_like_pixels(
        meta,
        _int_or_none(_value(ds, "SamplesPerPixel")),
        _int_or_none(_value(ds, "BitsAllocated")),
        _int_or_none(_value(ds, "PixelRepresentation")),
    ):
        return False
    # Any modality/VOI/presentation transform that changes values rules the fast path out.
    # Without any of these attributes the chain is the identity by definition (8 stored bits
    # span 0..255), so the ramp check below runs only for files that carry one (RSNA's don't).
    if not any(tag in ds for tag in _VALUE_TRANSFORM_TAGS):
        return True
    ramp = np.arange(256, dtype=np.uint8)
    unit = _gray_to_unit(ramp, ds)
    return bool(np.allclose(unit, ramp.astype(np.float32) / 255.0, rtol=0, atol=1e-6))


def _fast_decode(
    ds: Dataset, meta: DicomMeta, size: int
) -> tuple[np.ndarray, SquareGeometry] | None:
    """:func:`_reduced_decode` of the dataset's single frame."""
    return _reduced_decode(get_frame(ds.PixelData, 0, number_of_frames=1), meta, size)


def _reduced_decode(
    frame: bytes, meta: DicomMeta, size: int
) -> tuple[np.ndarray, SquareGeometry] | None:
    """Reduced-size libjpeg decode of one JPEG frame + pad + area resize; None if unsure."""
    rows, cols = int(meta.rows or 0), int(meta.columns or 0)
    geo = square_geometry(rows, cols, size)
    # Largest DCT scale that keeps the square >= size and the padding on whole reduced pixels,
    # so the reduced image is exactly the original's block grid (same geometry as the full path).
    k = 1
    for cand in (8, 4, 2):
        if (
            geo.side // cand >= size
            and rows % cand == 0
            and cols % cand == 0
            and geo.pad_top % cand == 0
            and geo.pad_left % cand == 0
        ):
            k = cand
            break
    # A truncated stream decodes "fine" with libjpeg (grey fill + warning): require the EOI marker.
    if not bytes(frame[-4:]).rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None
    # A header size the frame cannot hold: checked before decoding (the full path says why).
    if _size_problem(rows, cols, JPEGBaseline8Bit, frame) is not None:
        return None
    img = cv2.imdecode(
        np.frombuffer(frame, dtype=np.uint8), _REDUCED_FLAGS[k] | cv2.IMREAD_IGNORE_ORIENTATION
    )
    if img is None or img.dtype != np.uint8 or img.shape != (rows // k, cols // k):
        return None
    if img.min() == img.max():  # blank at this scale: the full decode decides (and says why)
        return None
    reduced = SquareGeometry(
        height=rows // k,
        width=cols // k,
        side=geo.side // k,
        pad_top=geo.pad_top // k,
        pad_left=geo.pad_left // k,
        size=size,
    )
    return _resize_square(_pad(img, reduced), size), geo


def load_dicom_resized(path: str | Path, size: int = 224, fast: bool = True) -> Radiograph:
    """Read a DICOM once and return the squared, resized uint8 image (preprocessing's unit).

    Args:
        path: the DICOM file.
        size: output side in pixels.
        fast: allow the reduced-size JPEG decode for RSNA-like files (falls back by itself).

    Returns:
        :class:`Radiograph` with ``image`` uint8 ``(size, size)`` (0 = air, 255 = bone),
        ``geometry`` for mapping boxes, ``fast_path`` telling which path ran.

    Raises:
        DicomReadError: for any file that cannot become a radiograph, including one under
            :data:`MIN_IMAGE_SIDE` pixels on a side, blank, non-finite or with an impossible
            header size (see the module docstring).
    """
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    size = int(size)
    path = Path(path)
    if fast:
        scanned = _load_scanned(path, size)
        if scanned is not None:
            return scanned
    notes: list[str] = []
    ds, truncated = _dcmread(path, notes)
    meta = _safe_meta(ds, path)
    if any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        _check_min_side(path, meta.rows, meta.columns)  # (no pixels at all: decoding says so)
    if fast:
        try:
            result = _fast_decode(ds, meta, size) if _fast_path_ok(ds, meta) else None
        except Exception as exc:  # any surprise: the full path decides
            notes.append(f"fast path failed ({_exc_reason(exc)[:80]}); used full decode")
            result = None
        if result is not None:
            image, geo = result
            return Radiograph(image=image, meta=meta, notes=notes, geometry=geo, fast_path=True)
    unit = _to_unit_image(ds, path, notes, truncated)
    resized, geo = square_and_resize(unit, size)
    return Radiograph(image=to_uint8(resized), meta=meta, notes=notes, geometry=geo)


# --------------------------------------------------------------------------- scanned fast path

# What the fast path needs from a header (see dicom_scan): the meta fields, the pixel module,
# the character set and every value transform (whose presence alone rules the scan out).
_SCAN_TAGS = frozenset(
    {*_TAG.values(), *_VALUE_TRANSFORM_TAGS, tag_for_keyword("SpecificCharacterSet"),
     SYNTHETIC_PRIVATE_CREATOR_TAG}
)
# The VR each of those has in the DICOM dictionary: an element written with another one
# (a corrupt or non-conformant file) is for pydicom to interpret.
_SCAN_VRS = {
    tag: dictionary_VR(tag).encode() for tag in _SCAN_TAGS if tag != SYNTHETIC_PRIVATE_CREATOR_TAG
}
# Character sets whose text this module decodes like pydicom; others go to pydicom.
_SCAN_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1",
                  "ISO_IR 192": "utf-8"}
# VRs whose text is in the Specific Character Set; the rest are plain ASCII (PS3.5 6.1.2.3).
_CHARSET_VRS = frozenset({b"LO", b"LT", b"PN", b"SH", b"ST", b"UC", b"UT"})
# An RSNA file is ~150 KB; anything this large is read once, by pydicom.
_SCAN_MAX_BYTES = 32 * 1024 * 1024


class _NeedsPydicom(Exception):
    """A scanned value that only pydicom reads right (several values, an odd encoding)."""


def _scanned_text(header: dicom_scan.ScannedHeader, tag: int, charset: str) -> str | None:
    item = header.elements.get(tag)
    if item is None:
        return None
    vr, raw = item
    if vr != _SCAN_VRS.get(tag, b"LO"):  # private creators are LO
        raise _NeedsPydicom("unexpected VR")
    raw = raw.rstrip(b"\0 ")
    if b"\\" in raw:
        raise _NeedsPydicom("several values")
    return raw.decode(charset if vr in _CHARSET_VRS else "ascii")


def _scanned_us(header: dicom_scan.ScannedHeader, tag: int) -> int | None:
    item = header.elements.get(tag)
    if item is None:
        return None
    vr, raw = item
    if vr != b"US" or _SCAN_VRS.get(tag) != b"US" or len(raw) != 2:
        raise _NeedsPydicom("not a single US value")
    return int.from_bytes(raw, "little")


def _scanned_meta(header: dicom_scan.ScannedHeader) -> DicomMeta | None:
    """The :class:`DicomMeta` that ``_meta_from_dataset`` gives for the same file, or None."""
    try:
        charset = _scanned_text(header, _TAG_CHARSET, "ascii") or ""
        if charset not in _SCAN_CHARSETS:
            return None
        encoding = _SCAN_CHARSETS[charset]

        def value(keyword: str) -> Any:
            tag = _TAG[keyword]
            if _SCAN_VRS[tag] == b"US":
                return _scanned_us(header, tag)
            return _scanned_text(header, tag, encoding)

        frames = _str_or_none(value("NumberOfFrames"))
        if frames is not None and not frames.isdigit():
            raise _NeedsPydicom("NumberOfFrames is not a plain integer")
        return _meta_from_values(value, header.transfer_syntax or None,
                                 _scanned_text(header, SYNTHETIC_PRIVATE_CREATOR_TAG, encoding))
    except (_NeedsPydicom, UnicodeDecodeError):
        return None


def _scanned_fast_ok(header: dicom_scan.ScannedHeader, meta: DicomMeta) -> bool:
    """:func:`_fast_path_ok` for a scanned header (a value transform rules it out here)."""
    try:
        return not any(tag in header.elements for tag in _VALUE_TRANSFORM_TAGS) and (
            _rsna_like_pixels(
                meta,
                _scanned_us(header, _TAG["SamplesPerPixel"]),
                _scanned_us(header, _TAG["BitsAllocated"]),
                _scanned_us(header, _TAG["PixelRepresentation"]),
            )
        )
    except _NeedsPydicom:
        return False


def _load_scanned(path: Path, size: int) -> Radiograph | None:
    """The fast path without pydicom: header scan + reduced decode.

    None hands the file to pydicom (:func:`load_dicom_resized`'s other branch), which also
    reports any error: a missing file, a file of another kind, a frame that fails to decode.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(_SCAN_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _SCAN_MAX_BYTES:
        return None
    header = dicom_scan.scan_header(data, _SCAN_TAGS)
    meta = _scanned_meta(header) if header is not None else None
    if header is None or meta is None or not _scanned_fast_ok(header, meta):
        return None
    try:
        result = _reduced_decode(header.frame, meta, size)
    except Exception:  # pydicom's branch tries again and notes the failure
        return None
    if result is None:
        return None
    image, geo = result
    return Radiograph(image=image, meta=meta, notes=[], geometry=geo, fast_path=True)


# --------------------------------------------------------------------------- PNG / JPEG


def load_image_file(path: str | Path, size: int = 224) -> Radiograph:
    """A PNG/JPEG (or any Pillow-readable) image -> uint8 ``(size, size)``, squared like DICOMs.

    Gray is taken as is (8- or 16-bit, scaled to [0, 1] by the bit depth); colour becomes
    BT.601 luma with a note; alpha is dropped; EXIF orientation is applied. A file that
    starts like a DICOM is handed to :func:`load_dicom_resized`.

    Raises:
        DicomReadError: missing, empty or unreadable image, one under :data:`MIN_IMAGE_SIDE` or
            over :data:`MAX_IMAGE_SIDE` pixels on a side, non-finite or blank (the reason names
            the problem).
    """
    from PIL import Image, ImageOps  # local: only the predict command needs it

    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    path = Path(path)
    if not path.is_file():
        raise DicomReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise DicomReadError(path, "empty file (0 bytes)")
    with path.open("rb") as f:
        head = f.read(132)
    if head[128:132] == b"DICM":
        return load_dicom_resized(path, size)

    notes: list[str] = []
    try:
        with Image.open(path) as im:
            width, height = im.size  # from the header: checked before decoding
            _check_min_side(path, height, width)
            if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
                raise DicomReadError(path, f"image is {width}x{height} pixels, above the "
                                           f"{MAX_IMAGE_SIDE} px per side a radiograph can have")
            im.load()
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                if mode not in ("1", "L", "LA"):
                    notes.append(f"{mode} image converted to gray")
                arr = np.asarray(im.convert("L"), dtype=np.float32) * np.float32(1.0 / 255.0)
            elif mode.startswith("I;16") or mode == "I":
                raw = np.asarray(im)
                top = 65535.0 if mode.startswith("I;16") or raw.max(initial=0) > 255 else 255.0
                arr = raw.astype(np.float32) * np.float32(1.0 / top)
            elif mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            else:
                raise DicomReadError(path, f"unsupported image mode {mode!r}")
    except DicomReadError:
        raise
    except Exception as exc:
        raise DicomReadError(path, f"not a readable PNG/JPEG image ({_exc_reason(exc)})") from exc
    if arr.ndim != 2 or arr.size == 0:
        raise DicomReadError(path, f"not a 2-D image: shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DicomReadError(path, "non-finite pixel values (NaN or infinity)")
    _check_contrast(path, np.clip(arr, 0.0, 1.0))
    resized, geo = square_and_resize(np.clip(arr, 0.0, 1.0), int(size))
    meta = DicomMeta(rows=arr.shape[0], columns=arr.shape[1])
    return Radiograph(image=to_uint8(resized), meta=meta, notes=notes, geometry=geo)
