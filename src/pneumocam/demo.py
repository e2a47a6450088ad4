"""Synthetic chest radiographs in exactly the RSNA stage 2 layout: the embedded default dataset.

The real RSNA Pneumonia Detection Challenge files need a Kaggle account, so the project ships a
generator that writes the same layout from a seed:

- ``stage_2_train_labels.csv``        ``patientId,x,y,width,height,Target``; one row per box for
  positives, one row with empty box fields per negative; boxes in 1024-px coordinates, x/y the
  upper-left corner
- ``stage_2_detailed_class_info.csv`` ``patientId,class``; one row per label row
- ``stage_2_train_images/<patientId>.dcm``  1024x1024, 8-bit MONOCHROME2, JPEG Baseline
- ``demo_info.json``                  ``synthetic: true``, counts, parameters, provenance; written
  last, so a dataset without it is incomplete (:func:`is_demo_dataset` keys on it)

Each image is a frontal chest radiograph drawn from a few dozen random parameters: body outline
and soft tissue, two lung fields with vascular markings, mediastinum and heart, spine, ribs,
clavicles, scapulae (AP), diaphragm, breast shadows, gastric bubble. "Lung Opacity" images carry
1-4 soft-edged textured consolidations whose bounding boxes (alpha >= ``box_threshold``) are the
labels; "No Lung Opacity / Not Normal" images carry findings that are not opacities (nodules,
tubes and lines, pacemakers, cardiomegaly, effusion, plate atelectasis, ...). Class, view, box
count, sex and age are sampled per image from the real stage 2 training-set shares
(:data:`RSNA_STAGE2_TRAIN`), view first and positivity conditional on view, so view position
is as much of a shortcut here as on the real data.

Every image is seeded from ``(seed, index)`` alone: the same seed gives byte-identical files
whatever the number of worker processes.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from . import rsna
from .atomic import atomic_write
from .dicom import SYNTHETIC_STUDY_DESCRIPTION as STUDY_DESCRIPTION  # what the reader recognises
from .errors import ConfigError, DataSourceError
from .provenance import provenance, to_jsonable, write_json_atomic

# ----------------------------------------------------------------------------------------------
# Layout and reference statistics
# ----------------------------------------------------------------------------------------------

# The layout is the one the reader expects: one definition, in pneumocam.rsna.
LABELS_CSV = rsna.LABELS_NAME
CLASS_INFO_CSV = rsna.CLASS_INFO_NAME
TRAIN_IMAGES_DIR = rsna.TRAIN_IMAGES_DIR
DEMO_INFO_JSON = rsna.DEMO_INFO_JSON
IN_PROGRESS_MARKER = ".demo_in_progress.json"
LABELS_HEADER = rsna.LABEL_COLUMNS
CLASS_INFO_HEADER = rsna.CLASS_COLUMNS

CLASS_OPACITY = "Lung Opacity"
CLASS_NOT_NORMAL = "No Lung Opacity / Not Normal"
CLASS_NORMAL = "Normal"
CLASSES = (CLASS_OPACITY, CLASS_NOT_NORMAL, CLASS_NORMAL)
VIEWS = ("AP", "PA")

IMAGE_SIZE = 1024
DEMO_DEFAULT_N = 2000  # what the main job generates by default: about 35 s on 2 cores
GENERATOR_NAME = "pneumocam.demo"
GENERATOR_VERSION = 2  # bump whenever the pixels or labels for a given seed change (2: RSNA box geometry)


@dataclass(frozen=True)
class RsnaReferenceStats:
    """Facts of the real RSNA stage 2 training set that the demo sampler reproduces.

    Shares are fractions in [0, 1]. ``box_count_shares`` is renormalised when sampling.
    """

    n_patients: int = 26684
    n_label_rows: int = 30227
    n_positive: int = 6012
    n_boxes: int = 9555
    class_shares: tuple[tuple[str, float], ...] = (
        (CLASS_OPACITY, 0.225), (CLASS_NOT_NORMAL, 0.443), (CLASS_NORMAL, 0.332),
    )
    view_shares: tuple[tuple[str, float], ...] = (("AP", 0.456), ("PA", 0.544))
    positive_rate_by_view: tuple[tuple[str, float], ...] = (("AP", 0.383), ("PA", 0.093))
    box_count_shares: tuple[tuple[int, float], ...] = ((1, 0.43), (2, 0.54), (3, 0.02), (4, 0.002))
    male_share: float = 0.57
    age_mean: float = 47.0
    age_sd: float = 16.8
    age_range: tuple[int, int] = (1, 92)
    dicom_kb: float = 130.0

    def class_share(self, name: str) -> float:
        return dict(self.class_shares)[name]

    def positive_share(self) -> float:
        """Overall positive share implied by the view shares and per-view positive rates."""
        rates = dict(self.positive_rate_by_view)
        return sum(share * rates[view] for view, share in self.view_shares)

    def not_normal_given_negative(self) -> float:
        """P(Not Normal | negative), chosen so the overall class shares match the real ones."""
        return self.class_share(CLASS_NOT_NORMAL) / (1.0 - self.positive_share())


RSNA_STAGE2_TRAIN = RsnaReferenceStats()


# ----------------------------------------------------------------------------------------------
# Difficulty knobs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """Rendering knobs of the synthetic radiographs (the label statistics are fixed: RSNA's).

    Densities are in the generator's linear units before windowing: air outside the body 0,
    aerated lung about 0.25, soft tissue about 0.6, rib about +0.1, windowed to [0, 1] grey.
    Box sizes are in 1024-px units, like the labels.

    The box geometry follows the real stage 2 training boxes
    (:data:`pneumocam.box_geometry.RSNA_STAGE2_BOX_GEOMETRY`): widths, heights, centres and
    areas within the tolerances tested in ``tests/test_demo.py``, 53-54% of boxes in the image's
    left half; on 6,000 images the image-free baselines of the test split are 0.54 (best fixed
    point) and IoU 0.31 (mean-box prior), against 0.58 and 0.29 on the real data.

    The densities were calibrated with the main job on a CPU (from-scratch ResNet-18, balanced
    sampler, AdamW 1e-3, batch 32, warm-up + cosine, 2 epochs on the 1,600 training images of
    the 2,000-image default): test ROC AUC 0.96 (200 images); 3 epochs gave 0.97. View position
    alone scores about 0.69 on the same split.
    """

    opacity_density: tuple[float, float] = (0.12, 0.36)
    """Peak added density of an ordinary opacity in aerated lung, drawn uniformly."""
    faint_fraction: float = 0.2
    """Share of opacities drawn with ``faint_density`` instead (hard positives)."""
    faint_density: tuple[float, float] = (0.04, 0.09)
    """Peak added density of a faint opacity."""
    box_width: tuple[float, float] = (205.0, 50.0)
    """Mean and sd (1024-px) of an opacity's intended box width, normal; the labelled boxes,
    after the lung clips them, come out at RSNA's 218 +- 59."""
    box_height: tuple[float, float] = (275.0, 0.6)
    """Median (1024-px) and log-sd of its intended height, log-normal; labelled: median about
    315 against RSNA's 298, 95% quantile 600 against 623."""
    centre_across: tuple[float, float] = (0.42, 0.2)
    """Mean and sd of the box centre's position across its lung, 0 medial edge, 1 lateral."""
    centre_down: tuple[float, float] = (0.92, 0.3)
    """Mean and sd of its position down the lung, 0 apex, 1 costophrenic angle."""
    single_box_left: float = 0.58
    """Chance that a lone opacity is in the image-left lung (RSNA: 53.5% of all boxes are)."""
    bilateral_prob: float = 0.85
    """Chance that a second opacity is in the other lung."""
    opacity_texture: float = 0.6
    """0: homogeneous blobs; 1: strongly patchy, irregular outlines."""
    air_bronchogram_prob: float = 0.35
    box_threshold: float = 0.3
    """Alpha (0-1) above which a pixel belongs to the opacity's labelled box."""
    lung_texture: float = 1.0
    """Scale of the vascular markings and parenchymal mottle that faint opacities hide in."""
    noise: tuple[float, float] = (0.008, 0.02)
    """Std of the pixel noise on the [0, 1] grey scale (PA); AP gets ``ap_noise_factor`` more."""
    ap_noise_factor: float = 1.5
    exposure_jitter: float = 1.0
    """Scale of the random window / gamma / fog per image (0: all images exposed alike)."""
    n_findings: tuple[int, int] = (1, 3)
    """How many non-opacity findings a "Not Normal" image carries (inclusive range)."""
    support_device_prob: tuple[float, float] = (0.35, 0.08)
    """(AP, PA) chance that any image carries ECG leads / lines, whatever its class."""
    jpeg_quality: int = 85
    """JPEG quality of the DICOM pixel data (about 100-150 KB per image, like RSNA)."""

    def __post_init__(self) -> None:
        for name in ("opacity_density", "faint_density", "box_width", "box_height",
                     "centre_across", "centre_down", "noise", "n_findings", "support_device_prob"):
            value = getattr(self, name)
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise ConfigError(f"DemoConfig.{name} must be a pair, got {value!r}.")
            if name in ("opacity_density", "faint_density", "noise", "n_findings") and \
                    value[0] > value[1]:
                raise ConfigError(f"DemoConfig.{name} must be (low, high), got {value!r}.")
        for name in ("faint_fraction", "single_box_left", "bilateral_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"DemoConfig.{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.box_width[0] <= 0 or self.box_height[0] <= 0:
            raise ConfigError("DemoConfig.box_width and box_height need a positive size.")
        if not 0.0 < self.box_threshold < 1.0:
            raise ConfigError(f"DemoConfig.box_threshold must be in (0, 1), got {self.box_threshold}.")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ConfigError(f"DemoConfig.jpeg_quality must be 1-100, got {self.jpeg_quality}.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DemoConfig:
        """Build from a JSON-like dict (lists become tuples); unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown DemoConfig field(s) {unknown}; valid fields: {sorted(known)}."
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


# ----------------------------------------------------------------------------------------------
# Per-image sampling of labels and demographics (no rendering)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseSpec:
    """What one synthetic patient is: labels and DICOM header fields, before any pixels."""

    patient_id: str
    view: str
    label_class: str
    n_boxes: int
    sex: str
    age: int

    @property
    def target(self) -> int:
        return int(self.label_class == CLASS_OPACITY)


def _patient_id(rng: np.random.Generator) -> str:
    """A UUID4-like lowercase id such as RSNA's ``0004cfab-14fd-4e49-80ba-63a80b6bddd6``."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def sample_case(rng: np.random.Generator,
                stats: RsnaReferenceStats = RSNA_STAGE2_TRAIN) -> CaseSpec:
    """Draw one patient's id, view, class, box count, sex and age.

    View first, then positivity conditional on view, then Not Normal vs Normal for negatives
    (a constant split that makes the overall class shares match ``stats``). Always consumes the
    same number of draws from ``rng``, so the rendering that follows is reproducible.
    """
    patient_id = _patient_id(rng)
    u_view, u_pos, u_neg, u_boxes, u_sex = rng.random(5)
    a = (stats.age_mean - stats.age_range[0]) / (stats.age_range[1] - stats.age_range[0])
    var = (stats.age_sd / (stats.age_range[1] - stats.age_range[0])) ** 2
    conc = a * (1 - a) / var - 1.0  # beta with the real mean and sd on the real range
    age_unit = rng.beta(a * conc, (1 - a) * conc)

    view = "AP" if u_view < dict(stats.view_shares)["AP"] else "PA"
    positive = u_pos < dict(stats.positive_rate_by_view)[view]
    if positive:
        label_class = CLASS_OPACITY
        counts = np.array([c for c, _ in stats.box_count_shares])
        probs = np.array([p for _, p in stats.box_count_shares], dtype=float)
        cum = np.cumsum(probs / probs.sum())
        n_boxes = int(counts[min(int(np.searchsorted(cum, u_boxes, side="right")), len(counts) - 1)])
    else:
        label_class = CLASS_NOT_NORMAL if u_neg < stats.not_normal_given_negative() else CLASS_NORMAL
        n_boxes = 0
    sex = "M" if u_sex < stats.male_share else "F"
    age = int(round(stats.age_range[0] + age_unit * (stats.age_range[1] - stats.age_range[0])))
    return CaseSpec(patient_id, view, label_class, n_boxes, sex, age)


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index`` for dataset ``seed``: independent of worker layout."""
    return np.random.default_rng([int(seed), int(index)])


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

_LO = 256  # smooth anatomy (soft tissue, lungs, heart) is drawn on this grid
_MID = 512  # bones, markings, opacities and devices on this one; noise at full size
_SUB = 16  # cv2 fixed-point drawing: coordinates in 1/16 pixel (shift=4)

FINDINGS = (
    "nodule", "cardiomegaly", "effusion", "tubes_lines", "pacemaker", "sternotomy",
    "plate_atelectasis", "hilar_enlargement", "hyperinflation",
)
_FINDING_WEIGHTS = (1.2, 1.0, 0.6, 1.0, 0.4, 0.4, 0.6, 0.5, 0.4)


@dataclass
class SyntheticRadiograph:
    """One rendered image and what is in it.

    Attributes:
        image: uint8 (1024, 1024), MONOCHROME2 (0 = air, black; 255 = dense, white).
        boxes: opacity bounding boxes ``(x, y, width, height)`` in 1024-px coordinates, x/y the
            upper-left corner, whole pixels.
        lung_mask: bool (256, 256), the two lung fields (heart shadow included) at 1/4 scale.
        findings: the non-opacity findings and support devices drawn.
    """

    image: np.ndarray
    boxes: list[tuple[float, float, float, float]]
    lung_mask: np.ndarray
    findings: list[str] = field(default_factory=list)


@dataclass
class _Anatomy:
    """Per-image geometry in the canonical frame (u right, v down, both 0-1 of the image)."""

    view: str
    scale: float
    angle: float
    shift: tuple[float, float]
    apex_v: float
    cp_v: tuple[float, float]  # costophrenic angle height per side (image left, image right)
    dome_h: tuple[float, float]
    d_lat: tuple[float, float]  # lateral lung extent from the midline per side
    d_med: float
    d_apex: float
    heart_w: float
    heart_h: float
    heart_dx: float
    soft: float
    air: float
    bone: float
    rib_dv: float
    rib_v0: float
    body_w: float


def _uniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _sample_anatomy(rng: np.random.Generator, view: str, sex: str, age: int,
                    findings: Sequence[str]) -> _Anatomy:
    """Draw the geometry and tissue densities; always the same number of draws."""
    ap = view == "AP"
    r = rng.random(24)

    def lerp(i: int, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(r[i])

    cp = lerp(0, 0.62, 0.70) if ap else lerp(0, 0.69, 0.77)
    dome = lerp(1, 0.05, 0.09)
    heart_w = lerp(2, 0.13, 0.16) * (lerp(3, 1.10, 1.25) if ap else 1.0)
    d_lat = lerp(4, 0.36, 0.41)
    anat = _Anatomy(
        view=view,
        scale=lerp(5, 0.90, 1.10) if ap else lerp(5, 0.88, 1.04),
        angle=(lerp(6, -3.5, 3.5) if ap else lerp(6, -1.5, 1.5)) * math.pi / 180,
        shift=(lerp(7, -0.03, 0.03) if ap else lerp(7, -0.015, 0.015),
               lerp(8, -0.04, 0.03) if ap else lerp(8, -0.02, 0.02)),
        apex_v=lerp(9, 0.11, 0.17),
        cp_v=(cp, cp + lerp(10, 0.005, 0.03)),
        dome_h=(dome, dome * lerp(11, 0.8, 1.0)),
        d_lat=(d_lat, d_lat + lerp(12, -0.015, 0.015)),
        d_med=lerp(13, 0.035, 0.055) if ap else lerp(13, 0.05, 0.07),
        d_apex=lerp(14, 0.13, 0.18),
        heart_w=heart_w,
        heart_h=heart_w * lerp(15, 0.62, 0.78),
        heart_dx=lerp(16, 0.03, 0.06),
        soft=lerp(17, 0.55, 0.68),
        air=lerp(18, 0.30, 0.40),
        bone=lerp(19, 0.75, 1.15) * (0.85 if age >= 70 else 1.0),
        rib_dv=lerp(20, 0.052, 0.062) * (0.93 if ap else 1.0),
        rib_v0=lerp(21, 0.10, 0.14),
        body_w=lerp(22, 0.41, 0.45) + (0.02 if sex == "M" else 0.0),
    )
    if "cardiomegaly" in findings:
        anat.heart_w *= 1.25 + 0.2 * float(r[23])
        anat.heart_h *= 1.15
    if "hyperinflation" in findings:
        anat.cp_v = (anat.cp_v[0] + 0.05, anat.cp_v[1] + 0.05)
        anat.dome_h = (anat.dome_h[0] * 0.45, anat.dome_h[1] * 0.45)
        anat.air += 0.04
        anat.heart_w *= 0.9
    return anat


class _Frame:
    """Canonical -> pixel transform (scale and rotation about the centre, shift) for one image."""

    def __init__(self, anat: _Anatomy):
        c, s = math.cos(anat.angle), math.sin(anat.angle)
        self.m = anat.scale * np.array([[c, -s], [s, c]])
        self.t = np.array([0.5 + anat.shift[0], 0.5 + anat.shift[1]])

    def uv(self, pts: np.ndarray) -> np.ndarray:
        """(k, 2) canonical points -> (k, 2) image fractions."""
        return (np.asarray(pts, dtype=float) - 0.5) @ self.m.T + self.t

    def px(self, pts: np.ndarray, res: int) -> np.ndarray:
        """(k, 2) canonical points -> int32 fixed-point pixel coordinates for cv2 (shift=4)."""
        return np.round(self.uv(pts) * res * _SUB).astype(np.int32)

    def grid(self, res: int) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (u, v) of every pixel centre of a res x res image, float32 each."""
        inv = np.linalg.inv(self.m)
        coords = (np.arange(res, dtype=np.float32) + 0.5) / res
        x, y = coords[None, :] - self.t[0], coords[:, None] - self.t[1]
        u = (inv[0, 0] * x + inv[0, 1] * y + 0.5).astype(np.float32)
        v = (inv[1, 0] * x + inv[1, 1] * y + 0.5).astype(np.float32)
        return u, v


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _fill(canvas: np.ndarray, frame: _Frame, pts: np.ndarray, value: int = 255) -> None:
    cv2.fillPoly(canvas, [frame.px(pts, canvas.shape[0])], int(value), cv2.LINE_AA, shift=4)


def _polyline(canvas: np.ndarray, frame: _Frame, pts: np.ndarray, value: int,
              thickness_uv: float) -> None:
    thick = max(1, int(round(thickness_uv * canvas.shape[0])))
    # LINE_8 is 3x faster than LINE_AA for thick lines; every canvas is blurred afterwards
    cv2.polylines(canvas, [frame.px(pts, canvas.shape[0])], False, int(value), thick,
                  cv2.LINE_8 if thick > 2 else cv2.LINE_AA, shift=4)


def _lung_outline(anat: _Anatomy, side: int) -> np.ndarray:
    """Polygon of one lung field in canonical coordinates; side -1 = image left (patient right)."""
    k = 0 if side < 0 else 1
    d_lat, cp, dome = anat.d_lat[k], anat.cp_v[k], anat.dome_h[k]
    d_med = anat.d_med + (0.01 if side > 0 else 0.0)
    card = cp - 0.02
    t = np.linspace(0.0, 1.0, 22)
    widen = 1.0 - (1.0 - np.minimum(t / 0.5, 1.0)) ** 2
    lat_d = anat.d_apex + (d_lat - anat.d_apex) * widen - 0.012 * np.clip((t - 0.75) / 0.25, 0, 1)
    lat_v = anat.apex_v + t * (cp - anat.apex_v)
    s = np.linspace(0.0, 1.0, 16)[1:]
    dia_d = d_lat - (d_lat - d_med) * s
    dia_v = cp * (1 - s) + card * s - dome * np.sin(np.pi * s ** 0.75)
    m = np.linspace(0.0, 1.0, 14)[1:-1]
    med_d = d_med + (anat.d_apex - d_med) * m ** 3
    med_v = card + m * (anat.apex_v + 0.01 - card)
    d = np.concatenate([lat_d, dia_d, med_d])
    v = np.concatenate([lat_v, dia_v, med_v])
    return np.stack([0.5 + side * d, v], axis=1)


def _lung_fields(frame: _Frame, anat: _Anatomy) -> tuple[list[np.ndarray], np.ndarray]:
    """uint8 (_LO, _LO) masks (0/255) of the image-left and image-right lung, and their union."""
    lungs = np.zeros((_LO, _LO), np.uint8)
    side_masks = []
    for side in (-1, 1):
        m = np.zeros((_LO, _LO), np.uint8)
        _fill(m, frame, _lung_outline(anat, side))
        side_masks.append(m)
        np.maximum(lungs, m, out=lungs)
    return side_masks, lungs


def _soft_lungs(lungs: np.ndarray) -> np.ndarray:
    """float32 (_LO, _LO) in [0, 1]: the lung union with soft edges."""
    return _blur(lungs.astype(np.float32) / 255.0, 1.6)


def _opacity_allow(lung: np.ndarray) -> np.ndarray:
    """float32 (_MID, _MID) in [0, 1]: where an opacity of one lung may show. That lung field
    (uint8 (_LO, _LO) mask, heart shadow included) plus its posterior recess, which reaches below
    the diaphragm dome on a frontal film: the mask smeared downward by 0.12 of the image height,
    with a soft edge. One lung only, so an opacity never spans the mediastinum."""
    reach = int(round(0.12 * _LO))
    kernel = np.zeros((2 * reach + 1, 1), np.uint8)
    kernel[:reach + 1] = 1  # anchor at the centre: each pixel takes the max of those above it
    recess = cv2.dilate(lung, kernel)
    return _up(_blur(recess.astype(np.float32) / 255.0, 2.0), _MID)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _up(img: np.ndarray, res: int) -> np.ndarray:
    return cv2.resize(img, (res, res), interpolation=cv2.INTER_LINEAR)


def _choose_findings(rng: np.random.Generator, view: str, distractors: bool | Sequence[str],
                     config: DemoConfig) -> list[str]:
    """Not-Normal findings (when ``distractors``) plus view-dependent support devices."""
    u_dev = rng.random()
    k = int(rng.integers(config.n_findings[0], config.n_findings[1] + 1))
    w = np.array(_FINDING_WEIGHTS)
    order = rng.choice(len(FINDINGS), size=len(FINDINGS), replace=False, p=w / w.sum())
    if isinstance(distractors, bool):
        chosen = [FINDINGS[i] for i in order[:k]] if distractors else []
    else:
        unknown = set(distractors) - set(FINDINGS)
        if unknown:
            raise ConfigError(f"Unknown finding(s) {sorted(unknown)}; choose from {FINDINGS}.")
        chosen = list(distractors)
    p_dev = config.support_device_prob[0 if view == "AP" else 1]
    if u_dev < p_dev:
        chosen.append("ecg_leads")
    return chosen


def _draw_vessels(rng: np.random.Generator, frame: _Frame, anat: _Anatomy,
                  canvas: np.ndarray) -> None:
    """Branching vascular markings radiating from both hila (uint8 canvas at _MID)."""
    for side in (-1, 1):
        hx, hy = 0.5 + side * (anat.d_med + 0.045), anat.apex_v + 0.42 * (anat.cp_v[0] - anat.apex_v)
        for _ in range(14):
            ang = rng.uniform(-1.25, 1.25)
            pts = [(hx, hy)]
            x, y = hx, hy
            n_seg = int(rng.integers(4, 8))
            for j in range(n_seg):
                step = rng.uniform(0.02, 0.045)
                ang += rng.normal(0, 0.25)
                x += side * step * math.cos(ang)
                y += step * math.sin(ang)
                pts.append((x, y))
                if j == 1 and rng.random() < 0.6:  # one side branch
                    bang = ang + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
                    bl = rng.uniform(0.04, 0.09)
                    bpts = np.array([(x, y), (x + side * bl * math.cos(bang), y + bl * math.sin(bang))])
                    _polyline(canvas, frame, bpts, 110, 0.003)
            pts_a = np.array(pts)
            # thick near the hilum, thin and faint at the periphery
            _polyline(canvas, frame, pts_a[:3], 230, 0.007)
            _polyline(canvas, frame, pts_a[2:], 150, 0.0035)


def _draw_ribs(frame: _Frame, anat: _Anatomy, canvas: np.ndarray) -> None:
    """Posterior ribs (bright, cortical edges), anterior ribs (fainter), clavicles."""
    ap = anat.view == "AP"
    thick = 0.022
    for side in (-1, 1):
        k = 0 if side < 0 else 1
        for i in range(11):
            v0 = anat.rib_v0 + i * anat.rib_dv
            width = min(0.17 + 0.07 * i, anat.d_lat[k] + 0.02)
            t = np.linspace(0, 1, 18)
            d = 0.03 + width * t
            v = v0 - 0.02 * np.sin(np.pi * t * 0.6) + (0.08 + 0.008 * i) * t ** 2
            post = np.stack([0.5 + side * d, v], axis=1)
            _polyline(canvas, frame, post, 150, thick)
            _polyline(canvas, frame, post + [0, -thick / 2], 230, 0.004)
            _polyline(canvas, frame, post + [0, thick / 2], 230, 0.004)
            # anterior rib: from the lateral end, medially and downward
            a = np.linspace(0, 1, 12)
            ant_d = d[-1] - (d[-1] - 0.12) * a
            ant_v = v[-1] + 0.02 + 0.2 * a - 0.06 * a ** 2
            _polyline(canvas, frame, np.stack([0.5 + side * ant_d, ant_v], axis=1), 80, thick * 1.1)
        # clavicle: S-shaped, higher and more horizontal on AP films
        c = np.linspace(0, 1, 16)
        cd = 0.035 + 0.28 * c
        cv_ = anat.apex_v + (-0.045 if ap else 0.0) - 0.035 * c * (0.6 if ap else 1.0) + 0.012 * np.sin(2 * np.pi * c)
        _polyline(canvas, frame, np.stack([0.5 + side * cd, cv_], axis=1), 240, 0.024)


def _draw_spine(frame: _Frame, canvas: np.ndarray) -> None:
    v = 0.0
    while v < 1.0:
        h = 0.038 + 0.012 * v
        _fill(canvas, frame, np.array([(0.465, v), (0.535, v), (0.535, v + h), (0.465, v + h)]), 200)
        v += h + 0.009


def _draw_devices(rng: np.random.Generator, frame: _Frame, anat: _Anatomy, canvas: np.ndarray,
                  findings: Sequence[str]) -> None:
    """Tubes, lines, ECG leads, pacemaker, sternotomy wires (uint8 canvas at _MID)."""
    r = canvas.shape[0]
    if "ecg_leads" in findings:
        for _ in range(int(rng.integers(2, 6))):
            cx, cy = rng.uniform(0.12, 0.88), rng.uniform(0.08, 0.75)
            c = frame.px(np.array([(cx, cy)]), r)[0]
            cv2.circle(canvas, tuple(int(q) for q in c), int(0.012 * r * _SUB), 200, 2, cv2.LINE_AA, shift=4)
            cv2.circle(canvas, tuple(int(q) for q in c), int(0.003 * r * _SUB), 255, -1, cv2.LINE_AA, shift=4)
            pts = [(cx, cy)]
            ang = rng.uniform(0, 2 * np.pi)
            for _ in range(8):
                ang += rng.normal(0, 0.4)
                pts.append((pts[-1][0] + 0.06 * math.cos(ang), pts[-1][1] + 0.06 * math.sin(ang)))
            _polyline(canvas, frame, np.array(pts), 120, 0.002)
    if "tubes_lines" in findings:
        carina = anat.apex_v + 0.17
        ett_end = carina - rng.uniform(0.02, 0.08)
        ett = np.array([(0.5 + 0.004 * math.sin(t * 3), t) for t in np.linspace(-0.02, ett_end, 10)])
        _polyline(canvas, frame, ett, 60, 0.014)
        _polyline(canvas, frame, ett, 200, 0.003)
        if rng.random() < 0.7:  # nasogastric tube into the stomach
            t = np.linspace(0, 1, 14)
            ng = np.stack([0.51 + 0.07 * t ** 2 + 0.01 * np.sin(6 * t),
                           -0.02 + t * (anat.cp_v[1] + 0.12)], axis=1)
            _polyline(canvas, frame, ng, 190, 0.005)
        if rng.random() < 0.8:  # central venous catheter
            side = int(rng.choice([-1, 1]))
            t = np.linspace(0, 1, 12)
            cvc = np.stack([0.5 + side * (0.26 - 0.23 * t ** 0.7),
                            anat.apex_v + 0.02 + 0.22 * t ** 1.3], axis=1)
            _polyline(canvas, frame, cvc, 220, 0.004)
    if "pacemaker" in findings:
        side = int(rng.choice([-1, 1]))
        cx, cy = 0.5 + side * rng.uniform(0.2, 0.3), anat.apex_v + rng.uniform(-0.02, 0.04)
        box = _ellipse(cx, cy, 0.035, 0.028, rng.uniform(-0.3, 0.3), n=24)
        _fill(canvas, frame, box, 255)
        for end in (0.52, 0.56):
            t = np.linspace(0, 1, 14)
            lead = np.stack([cx + (end - cx) * t + 0.03 * np.sin(np.pi * t),
                             cy + (anat.cp_v[1] - 0.06 - cy) * t ** 1.2], axis=1)
            _polyline(canvas, frame, lead, 230, 0.004)
    if "sternotomy" in findings:
        for i in range(int(rng.integers(4, 7))):
            y = anat.apex_v + 0.1 + i * 0.055
            loop = _ellipse(0.5 + rng.normal(0, 0.004), y, 0.012, 0.006, rng.normal(0, 0.2), n=16)
            cv2.polylines(canvas, [frame.px(loop, r)], True, 255, 3, cv2.LINE_AA, shift=4)


def _sample_centre(rng: np.random.Generator, side_mask: np.ndarray,
                   frame_v: np.ndarray, anat: _Anatomy,
                   taken: list[tuple[float, float]]) -> tuple[float, float]:
    """A point (image fractions) inside one lung, lower zones favoured, away from ``taken``."""
    idx = np.flatnonzero(side_mask.ravel() > 200)
    if idx.size == 0:  # a lung pushed mostly out of the frame: any lung pixel will do
        idx = np.flatnonzero(side_mask.ravel() > 0)
    if idx.size == 0:  # pragma: no cover - the lungs are never wholly outside the image
        raise RuntimeError("no lung pixels to place a finding in")
    rel = (frame_v.ravel()[idx] - anat.apex_v) / max(anat.cp_v[0] - anat.apex_v, 1e-3)
    w = 0.25 + np.clip(rel, 0, 1.2) ** 1.5
    w /= w.sum()
    res = side_mask.shape[0]
    best: tuple[float, float] | None = None
    for _ in range(8):
        j = idx[int(rng.choice(len(idx), p=w))]
        y, x = divmod(int(j), res)
        pt = ((x + rng.random()) / res, (y + rng.random()) / res)
        best = pt
        if all(math.hypot(pt[0] - a, pt[1] - b) > 0.13 for a, b in taken):
            break
    assert best is not None
    return best


def _render_opacity(rng: np.random.Generator, centre: tuple[float, float],
                    size: tuple[float, float], config: DemoConfig,
                    allow: np.ndarray, alpha_total: np.ndarray,
                    density_total: np.ndarray) -> tuple[int, int, int, int] | None:
    """Add one consolidation at ``centre`` (image fractions) on the _MID grid.

    ``size`` is the intended box ``(width, height)`` in image fractions: the lobes' Gaussian
    scales are set so that alpha >= box_threshold spans about that much before the lung clips it.
    ``allow`` (float32 0-1) is where lung is; the opacity's alpha is clipped to it. Updates
    ``alpha_total`` (max) and ``density_total`` (sum) in place and returns the box
    ``(x0, y0, x1, y1)`` (inclusive, _MID pixels) of alpha >= box_threshold, or None if empty.
    """
    r = allow.shape[0]
    sx = size[0] * r / (2.0 * _EXTENT_PER_SIGMA)
    sy = size[1] * r / (2.0 * _EXTENT_PER_SIGMA)
    theta = rng.uniform(-0.15, 0.15)  # tall boxes stay upright, like lobar consolidation
    faint = rng.random() < config.faint_fraction
    dens = _uniform(rng, config.faint_density if faint else config.opacity_density)
    half = int(math.ceil(2.8 * max(sx, sy)))
    cx, cy = centre[0] * r, centre[1] * r
    x0, x1 = max(0, int(cx) - half), min(r, int(cx) + half + 1)
    y0, y1 = max(0, int(cy) - half), min(r, int(cy) + half + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    shape = np.zeros_like(xx)
    c, s = math.cos(theta), math.sin(theta)
    for _ in range(int(rng.integers(2, 5))):  # irregular outline: a few overlapping lobes
        ox, oy = rng.normal(0, 0.45 * sx), rng.normal(0, 0.45 * sy)
        lx, ly = sx * rng.uniform(0.55, 0.95), sy * rng.uniform(0.55, 0.95)
        dx, dy = xx - (cx + ox), yy - (cy + oy)
        a = (c * dx + s * dy) / lx
        b = (-s * dx + c * dy) / ly
        shape = np.maximum(shape, np.exp(-0.5 * (a * a + b * b)))
    tex = config.opacity_texture
    h, w = shape.shape
    g = rng.standard_normal((6, 6)).astype(np.float32)
    coarse = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    fine_g = rng.standard_normal((max(3, h // 10), max(3, w // 10))).astype(np.float32)
    fine = cv2.resize(fine_g, (w, h), interpolation=cv2.INTER_CUBIC)
    a = shape * (1.0 + 0.45 * tex * coarse)
    alpha = np.clip((a - 0.18) / 0.55, 0.0, 1.0)
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: soft edges
    patchy = rng.random() < 0.5 * tex + 0.2
    if patchy:  # bronchopneumonia-like mottling
        alpha *= np.clip(0.65 + 0.35 * tex * fine, 0.2, 1.0)
    alpha *= allow[y0:y1, x0:x1]
    mask = alpha >= config.box_threshold
    if not mask.any():
        return None
    body = alpha
    if rng.random() < config.air_bronchogram_prob:  # dark branching airways in the dense core
        airways = np.zeros((h, w), np.uint8)
        ang0 = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(2, 5))):
            ang, x, y = ang0 + rng.normal(0, 0.6), cx - x0, cy - y0
            pts = [(x, y)]
            for _ in range(5):
                ang += rng.normal(0, 0.3)
                x, y = x + 0.35 * sx * math.cos(ang), y + 0.35 * sy * math.sin(ang)
                pts.append((x, y))
            cv2.polylines(airways, [np.round(np.array(pts) * _SUB).astype(np.int32)], False, 255,
                          max(1, int(0.1 * sx)), cv2.LINE_AA, shift=4)
        core = np.clip((alpha - 0.5) * 2, 0, 1)
        body = alpha * (1.0 - 0.45 * core * _blur(airways.astype(np.float32) / 255.0, 1.0))
    ys, xs = np.nonzero(mask)
    np.maximum(alpha_total[y0:y1, x0:x1], alpha, out=alpha_total[y0:y1, x0:x1])
    density_total[y0:y1, x0:x1] += dens * body
    return x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()), y0 + int(ys.max())


# Half a box spans about this many lobe sigmas (irregular lobes of 0.55-0.95 sigma, random
# offsets, smoothstep edge, then the lung's clip); calibrated with box_width/box_height so that
# the labelled boxes match RSNA's sizes (tests/test_demo.py::test_box_geometry_follows_rsna).
_EXTENT_PER_SIGMA = 1.15


def _opacity_sides(rng: np.random.Generator, n: int, config: DemoConfig) -> list[int]:
    """Which lung (-1 image left, +1 image right) each of ``n`` opacities goes to."""
    if n == 1:
        return [-1 if rng.random() < config.single_box_left else 1]
    first = int(rng.choice([-1, 1]))
    second = -first if rng.random() < config.bilateral_prob else first
    return [first, second] + [int(rng.choice([-1, 1])) for _ in range(n - 2)]


def _opacity_centre(rng: np.random.Generator, side: int, frame: _Frame, anat: _Anatomy,
                    side_mask: np.ndarray, taken: list[tuple[float, float]],
                    config: DemoConfig) -> tuple[float, float]:
    """A box centre (image fractions) in one lung: across the lung from its medial to its
    lateral edge at ``config.centre_across`` (mean, sd of the fraction), down it from apex to
    costophrenic angle at ``config.centre_down``; redrawn until it falls inside ``side_mask``
    (uint8, _LO) and away from the centres already ``taken``."""
    k = 0 if side < 0 else 1
    d_med, d_lat = anat.d_med, anat.d_lat[k]
    best: tuple[float, float] | None = None
    for _ in range(12):
        across = float(np.clip(rng.normal(*config.centre_across), 0.05, 0.95))
        down = float(np.clip(rng.normal(*config.centre_down), 0.05, 1.2))
        u = 0.5 + side * (d_med + across * (d_lat - d_med))
        v = anat.apex_v + down * (anat.cp_v[k] - anat.apex_v)
        x, y = frame.uv(np.array([(u, v)]))[0]
        res = side_mask.shape[0]
        col, row = int(x * res), int(y * res)
        inside = 0 <= row < res and 0 <= col < res and side_mask[row, col] > 0
        if inside:
            best = (float(x), float(y))
            if all(math.hypot(x - a, y - b) > 0.22 for a, b in taken):
                break
    if best is None:  # a lung pushed mostly out of the frame: any lung pixel will do
        idx = np.flatnonzero(side_mask.ravel() > 0)
        if idx.size == 0:  # pragma: no cover - the lungs are never wholly outside the image
            raise RuntimeError("no lung pixels to place an opacity in")
        row, col = divmod(int(idx[int(rng.integers(idx.size))]), side_mask.shape[0])
        best = ((col + 0.5) / side_mask.shape[0], (row + 0.5) / side_mask.shape[0])
    return best


def _opacity_size(rng: np.random.Generator, config: DemoConfig) -> tuple[float, float]:
    """Intended box (width, height) in image fractions: width normal, height log-normal, each
    clipped to a plausible range (1024-px parameters from :class:`DemoConfig`)."""
    w = float(np.clip(rng.normal(*config.box_width), 70, 420)) / IMAGE_SIZE
    h = float(np.clip(math.exp(rng.normal(math.log(config.box_height[0]), config.box_height[1])),
                      70, 760)) / IMAGE_SIZE
    return w, h


def _place_opacities(rng: np.random.Generator, frame: _Frame, anat: _Anatomy,
                     side_masks: Sequence[np.ndarray], allows: Sequence[np.ndarray], n: int,
                     config: DemoConfig
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, float, float]]]:
    """Draw ``n`` consolidations with RSNA-like box geometry (see :class:`DemoConfig`).

    Args:
        side_masks: uint8 (_LO, _LO) masks of the image-left and image-right lung.
        allows: per lung, float32 (_MID, _MID) in [0, 1], where its opacities may show.

    Returns:
        ``(alpha, density, boxes)``: float32 (_MID, _MID) opacity alpha (max over opacities) and
        added density (sum), and the boxes ``(x, y, width, height)`` in 1024-px coordinates.
    """
    alpha_tot = np.zeros((_MID, _MID), np.float32)
    opa_dens = np.zeros((_MID, _MID), np.float32)
    boxes: list[tuple[float, float, float, float]] = []
    if not n:
        return alpha_tot, opa_dens, boxes
    taken: list[tuple[float, float]] = []
    for side in _opacity_sides(rng, n, config):
        side_mask = cv2.erode(side_masks[0 if side < 0 else 1], np.ones((9, 9), np.uint8))
        for _ in range(20):
            centre = _opacity_centre(rng, side, frame, anat, side_mask, taken, config)
            box = _render_opacity(rng, centre, _opacity_size(rng, config), config,
                                  allows[0 if side < 0 else 1],
                                  alpha_tot, opa_dens)
            if box is not None:
                break
        else:  # pragma: no cover - the eroded lung always has room
            raise RuntimeError("could not place an opacity inside the lung")
        taken.append(centre)
        bx0, by0, bx1, by1 = box
        scale = IMAGE_SIZE / _MID
        boxes.append((bx0 * scale, by0 * scale, (bx1 - bx0 + 1) * scale, (by1 - by0 + 1) * scale))
    return alpha_tot, opa_dens, boxes


@functools.lru_cache(maxsize=1)
def _noise_table() -> np.ndarray:
    """A fixed float32 (1536, 1536) table of unit-variance uniform noise, made once per process."""
    rng = np.random.default_rng(20180827)  # fixed: the table is part of the generator
    return ((rng.random((1536, 1536), dtype=np.float32) - 0.5) * math.sqrt(12)).astype(np.float32)


def render_radiograph(rng: np.random.Generator, view: str, n_opacities: int = 0,
                      distractors: bool | Sequence[str] = False,
                      config: DemoConfig | None = None, *, sex: str = "M",
                      age: int = 50) -> SyntheticRadiograph:
    """Draw one synthetic frontal chest radiograph.

    Args:
        rng: the image's generator; the anatomy, findings, opacities and noise each come from
            their own child stream, so the same ``rng`` state with and without opacities gives
            the same image except where the opacities are.
        view: ``"AP"`` (portable look: wider mediastinum, magnified heart, scapulae over the
            lungs, lower contrast, more noise) or ``"PA"``.
        n_opacities: number of consolidations (0-4), one box each.
        distractors: True for a random set of non-opacity findings ("Not Normal"), or a list of
            names from :data:`FINDINGS`.
        config: difficulty knobs (:class:`DemoConfig`).
        sex, age: shape the body (breast shadows, bone density).

    Returns:
        :class:`SyntheticRadiograph` with a uint8 (1024, 1024) image and the opacities' boxes.
    """
    config = config or DemoConfig()
    if view not in VIEWS:
        raise ConfigError(f"view must be one of {VIEWS}, got {view!r}.")
    if not 0 <= n_opacities <= 4:
        raise ConfigError(f"n_opacities must be 0-4, got {n_opacities}.")
    seeds = rng.integers(0, 2**63 - 1, size=6)
    a_rng, f_rng, o_rng, d_rng, n_rng, t_rng = (np.random.default_rng(int(s)) for s in seeds)
    findings = _choose_findings(f_rng, view, distractors, config)
    anat = _sample_anatomy(a_rng, view, sex, age, findings)
    ap = view == "AP"
    frame = _Frame(anat)
    u, v = frame.grid(_LO)

    # --- soft tissue, lungs, heart at _LO -----------------------------------------------------
    bw = anat.body_w
    body = np.zeros((_LO, _LO), np.uint8)
    _fill(body, frame, np.array([
        (0.42, -0.1), (0.58, -0.1), (0.59, 0.03), (0.5 + bw * 0.7, 0.05), (0.5 + bw + 0.05, 0.09),
        (0.5 + bw + 0.06, 0.2), (0.5 + bw + 0.01, 0.32), (0.5 + bw - 0.01, 0.62),
        (0.5 + bw - 0.04, 1.1), (0.5 - bw + 0.04, 1.1), (0.5 - bw + 0.01, 0.62),
        (0.5 - bw - 0.01, 0.32), (0.5 - bw - 0.06, 0.2), (0.5 - bw - 0.05, 0.09),
        (0.5 - bw * 0.7, 0.05), (0.41, 0.03),
    ]))
    if ap and a_rng.random() < 0.6:  # arms beside the chest on portable films
        for side in (-1, 1):
            x = 0.5 + side * (bw + 0.04)
            _fill(body, frame, np.array([(x - 0.04, 0.12), (x + 0.04, 0.12), (x + 0.05, 1.1),
                                         (x - 0.03, 1.1)]))
    bodyf = body.astype(np.float32) / 255.0
    small = cv2.resize(bodyf, (64, 64), interpolation=cv2.INTER_AREA)
    thickness = _up(_blur(small, 7.0), _LO)  # thicker in the middle of the trunk
    dens = anat.soft * _blur(bodyf, 1.5) * (0.55 + 0.45 * np.clip(thickness * 1.4, 0, 1))

    side_masks, lungs = _lung_fields(frame, anat)
    heart = np.zeros((_LO, _LO), np.uint8)
    hcx = 0.5 + anat.heart_dx
    hcy = min(anat.cp_v[1] - 0.02, anat.cp_v[0]) - anat.heart_h * 0.75  # lower edge hides below the domes
    _fill(heart, frame, _ellipse(hcx, hcy, anat.heart_w, anat.heart_h * 1.1, -0.3))
    _fill(heart, frame, _ellipse(0.5 + anat.d_med + 0.02, anat.apex_v + 0.12, 0.032, 0.028))  # aortic knob
    # vascular pedicle: joins the knob to the heart so the mediastinum has no lung notch
    _fill(heart, frame, np.array([(0.5 - anat.d_med - 0.005, anat.apex_v + 0.1),
                                  (0.5 + anat.d_med + 0.03, anat.apex_v + 0.12),
                                  (hcx + 0.3 * anat.heart_w, hcy), (hcx - 0.6 * anat.heart_w, hcy)]))
    lungf = _soft_lungs(lungs)
    heartf = _blur(heart.astype(np.float32) / 255.0, 1.4)
    lung_vis = lungf * (1.0 - heartf)
    # air is deepest in the middle of each lung; the edges have less lung in the beam path
    depth = np.clip(_blur(lung_vis, 8.0) * 1.3, 0, 1)
    dens -= anat.air * lung_vis * (0.75 + 0.25 * depth)
    dens += 0.02 * heartf
    airway = np.zeros((_LO, _LO), np.uint8)  # trachea and main bronchi: a dark column of air
    carina = (0.5 + 0.005, anat.apex_v + 0.17)
    _polyline(airway, frame, np.array([(0.5, -0.05), (0.5, anat.apex_v), carina]), 255, 0.05)
    for side, drop in ((-1, 0.05), (1, 0.07)):
        _polyline(airway, frame, np.array([carina, (carina[0] + side * 0.06, carina[1] + drop)]), 200, 0.03)
    dens -= 0.1 * _blur(airway.astype(np.float32) / 255.0, 2.0) * (1.0 - lung_vis)
    for side in (-1, 1):  # hila
        hx = 0.5 + side * (anat.d_med + 0.04)
        hy = anat.apex_v + 0.42 * (anat.cp_v[0] - anat.apex_v)
        big = 1.7 if "hilar_enlargement" in findings else 1.0
        dens += (0.05 * big) * np.exp(-(((u - hx) / (0.025 * big)) ** 2 + ((v - hy) / (0.05 * big)) ** 2))
    if sex == "F" and age >= 16:  # breast shadows over the lower zones
        for side in (-1, 1):
            bx, by = 0.5 + side * 0.25, anat.cp_v[0] - 0.03
            e = ((u - bx) / 0.2) ** 2 + ((v - by) / 0.14) ** 2
            ramp = np.clip((v - (by - 0.18)) / 0.25, 0, 1)  # fades upward; firm lower margin
            dens += a_rng.uniform(0.01, 0.035) * np.clip((1.05 - e) / 0.25, 0, 1) * ramp * bodyf
    if a_rng.random() < 0.6:  # gastric bubble under the left hemidiaphragm
        gx, gy = 0.5 + 0.2, anat.cp_v[1] + 0.03
        dens -= 0.12 * np.exp(-(((u - gx) / 0.045) ** 2 + ((v - gy) / 0.025) ** 2)) * (1 - lungf)
    if "effusion" in findings:
        side = int(f_rng.choice([-1, 1]))
        k = 0 if side < 0 else 1
        d = np.abs(u - 0.5)
        rel = np.clip((d - anat.d_med) / (anat.d_lat[k] - anat.d_med), 0, 1)
        level = anat.cp_v[k] - f_rng.uniform(0.05, 0.14) * (0.35 + 0.65 * rel ** 2)
        fluid = np.clip((v - level) / 0.02, 0, 1) * (np.sign(u - 0.5) == side)
        dens += f_rng.uniform(0.15, 0.28) * _blur(fluid.astype(np.float32) * lungf, 1.5)
    heel = (a_rng.uniform(-0.03, 0.03) * (v - 0.5)).astype(np.float32)  # anode heel effect

    # --- fine structures at _MID ----------------------------------------------------------------
    dens_m = _up((dens + heel).astype(np.float32), _MID)
    lung_m = _up(lung_vis, _MID)
    allows = [_opacity_allow(m) for m in side_masks]

    alpha_tot, opa_dens, boxes = _place_opacities(o_rng, frame, anat, side_masks, allows,
                                                  n_opacities, config)
    if n_opacities:
        # consolidation replaces air, so it adds most where the beam crosses the most lung
        # (less over the heart and below the domes, where it shows as a subtler density)
        dens_m += opa_dens * (0.35 + 0.65 * lung_m)

    vessels = np.zeros((_MID, _MID), np.uint8)
    _draw_vessels(t_rng, frame, anat, vessels)
    mottle = _up(_blur(t_rng.standard_normal((64, 64)).astype(np.float32), 1.0), _MID)
    texture = (0.07 * _blur(vessels.astype(np.float32) / 255.0, 1.0) + 0.012 * mottle) * lung_m
    if n_opacities:
        texture *= 1.0 - 0.7 * alpha_tot  # consolidation hides the vessels it surrounds
    dens_m += config.lung_texture * texture

    bones = np.zeros((_MID, _MID), np.uint8)
    _draw_ribs(frame, anat, bones)
    if ap and a_rng.random() < 0.75:  # scapulae project over the upper lateral lungs
        for side in (-1, 1):
            k = 0 if side < 0 else 1
            dl = anat.d_lat[k]
            _fill(bones, frame, np.array([(0.5 + side * (dl - 0.07), 0.12), (0.5 + side * (dl + 0.06), 0.13),
                                          (0.5 + side * (dl - 0.02), 0.42)]), 70)
    for side in (-1, 1):  # humeral heads at the shoulders
        _fill(bones, frame, _ellipse(0.5 + side * (anat.body_w + 0.04), 0.13, 0.045, 0.05), 170)
    spine = np.zeros((_MID, _MID), np.uint8)
    _draw_spine(frame, spine)
    bone_vis = 0.12 + 0.88 * lung_m  # bones show best against aerated lung
    dens_m += anat.bone * (0.085 * _blur(bones.astype(np.float32) / 255.0, 0.8) * bone_vis
                           + 0.05 * _blur(spine.astype(np.float32) / 255.0, 1.5))

    # --- non-opacity findings ---------------------------------------------------------------
    if any(f in findings for f in ("ecg_leads", "tubes_lines", "pacemaker", "sternotomy")):
        dev = np.zeros((_MID, _MID), np.uint8)
        _draw_devices(d_rng, frame, anat, dev, findings)
        dens_m += 0.45 * _blur(dev.astype(np.float32) / 255.0, 0.7)
    if "nodule" in findings:
        nod = np.zeros((_MID, _MID), np.uint8)
        for _ in range(int(d_rng.integers(1, 4))):
            side = side_masks[int(d_rng.integers(0, 2))]
            c = _sample_centre(d_rng, cv2.erode(side, np.ones((7, 7), np.uint8)), v, anat, [])
            rad = d_rng.uniform(0.006, 0.018) * _MID
            bright = int(d_rng.uniform(120, 255))
            cv2.circle(nod, (int(c[0] * _MID * _SUB), int(c[1] * _MID * _SUB)), int(rad * _SUB),
                       bright, -1, cv2.LINE_AA, shift=4)
        dens_m += 0.3 * _blur(nod.astype(np.float32) / 255.0, 0.8)
    if "plate_atelectasis" in findings:
        pl = np.zeros((_MID, _MID), np.uint8)
        for _ in range(int(d_rng.integers(1, 3))):
            side = int(d_rng.choice([-1, 1]))
            y = anat.cp_v[0] - d_rng.uniform(0.06, 0.16)
            x = 0.5 + side * d_rng.uniform(0.12, 0.28)
            ln = d_rng.uniform(0.05, 0.12)
            tilt = d_rng.normal(0, 0.02)
            _polyline(pl, frame, np.array([(x - ln / 2, y - tilt), (x + ln / 2, y + tilt)]), 255, 0.006)
        dens_m += 0.12 * _blur(pl.astype(np.float32) / 255.0, 1.2) * lung_m

    # --- exposure, noise, full size ------------------------------------------------------------
    j = config.exposure_jitter
    lo = 0.0 + j * a_rng.uniform(-0.05, 0.06)
    hi = (0.86 if not ap else 0.80) + j * a_rng.uniform(-0.08, 0.08)
    gamma = math.exp(j * a_rng.uniform(-0.2, 0.2))
    fog = j * (a_rng.uniform(0.0, 0.12) if ap else a_rng.uniform(0.0, 0.04))
    grey = np.clip((dens_m - lo) / (hi - lo), 0.0, 1.0) ** gamma
    grey = grey * (1.0 - fog) + 0.5 * fog
    marker = np.zeros((_MID, _MID), np.uint8)  # side marker, as on real films
    mpos = frame.px(np.array([(0.08, 0.07)]), _MID)[0] // _SUB
    cv2.putText(marker, "R", (int(mpos[0]), int(mpos[1])), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2,
                cv2.LINE_AA)
    grey = np.maximum(grey, marker.astype(np.float32) / 255.0 * 0.95)
    # noise: a correlated part (at _MID, upsampled with the image) plus per-pixel noise at full
    # size; both are random crops of a fixed noise table (drawing 1M fresh numbers per image
    # would cost more than the rest of the pixel noise work together)
    sigma = _uniform(n_rng, config.noise) * (config.ap_noise_factor if ap else 1.0) * 255.0
    table = _noise_table()
    oy, ox, my, mx = (int(q) for q in n_rng.integers(0, table.shape[0] - IMAGE_SIZE, size=4))
    grey = grey.astype(np.float32) * 255.0 + 0.5  # +0.5: the uint8 cast below truncates
    cv2.scaleAdd(table[my:my + _MID, mx:mx + _MID], 0.7 * sigma, grey, dst=grey)
    full = cv2.resize(grey, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    cv2.scaleAdd(table[oy:oy + IMAGE_SIZE, ox:ox + IMAGE_SIZE], 0.7 * sigma, full, dst=full)
    img = np.clip(full, 0, 255, out=full).astype(np.uint8)
    return SyntheticRadiograph(image=img, boxes=boxes, lung_mask=lungs > 127, findings=findings)


def radiograph_boxes(rng: np.random.Generator, view: str, n_opacities: int = 0,
                     distractors: bool | Sequence[str] = False,
                     config: DemoConfig | None = None, *, sex: str = "M",
                     age: int = 50) -> list[tuple[float, float, float, float]]:
    """The boxes :func:`render_radiograph` would label with the same arguments, without drawing
    the image (about 50x faster): the anatomy, lungs and opacities come from the same streams.

    Returns:
        boxes ``(x, y, width, height)`` in 1024-px coordinates, x/y the upper-left corner.
    """
    config = config or DemoConfig()
    seeds = rng.integers(0, 2**63 - 1, size=6)
    a_rng, f_rng, o_rng = (np.random.default_rng(int(s)) for s in seeds[:3])
    findings = _choose_findings(f_rng, view, distractors, config)
    anat = _sample_anatomy(a_rng, view, sex, age, findings)
    frame = _Frame(anat)
    side_masks, _ = _lung_fields(frame, anat)
    allows = [_opacity_allow(m) for m in side_masks]
    return _place_opacities(o_rng, frame, anat, side_masks, allows, n_opacities, config)[2]


def case_boxes(case: CaseSpec, rng: np.random.Generator,
               config: DemoConfig | None = None) -> list[tuple[float, float, float, float]]:
    """The boxes :func:`render_case` would label, without drawing the image."""
    return radiograph_boxes(rng, case.view, case.n_boxes, case.label_class == CLASS_NOT_NORMAL,
                            config, sex=case.sex, age=case.age)


def sample_labels(n: int, seed: int = 0, config: DemoConfig | None = None,
                  start: int = 0) -> list[dict[str, Any]]:
    """The label rows :func:`make_demo_dataset` writes for images ``start .. start + n - 1`` of
    dataset ``seed``, without drawing any image: for studying the demo's box geometry and its
    image-free baselines at sizes too large to render quickly.

    Returns:
        One dict per label row (``patientId, x, y, width, height, Target``, 1024-px floats
        rounded as in the CSV; None for a negative's box fields) in the CSV's order.
    """
    rows: list[dict[str, Any]] = []
    for index in range(start, start + n):
        rng = case_rng(seed, index)
        case = sample_case(rng)
        if not case.target:
            rows.append({"patientId": case.patient_id, "x": None, "y": None, "width": None,
                         "height": None, "Target": 0})
            continue
        for box in case_boxes(case, rng, config):
            x, y, w, h = (float(_fmt(v)) for v in box)
            rows.append({"patientId": case.patient_id, "x": x, "y": y, "width": w, "height": h,
                         "Target": 1})
    return rows


def render_case(case: CaseSpec, rng: np.random.Generator,
                config: DemoConfig | None = None) -> SyntheticRadiograph:
    """Render the image of a sampled case (boxes = ``case.n_boxes`` opacities)."""
    return render_radiograph(rng, case.view, case.n_boxes, case.label_class == CLASS_NOT_NORMAL,
                             config, sex=case.sex, age=case.age)


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------


def encode_dicom(image: np.ndarray, case: CaseSpec, jpeg_quality: int = 90) -> bytes:
    """A complete DICOM file (bytes) for one uint8 (1024, 1024) image, RSNA-style.

    JPEG Baseline (1.2.840.10008.1.2.4.50) Secondary Capture, 8-bit MONOCHROME2, with the
    patient fields of ``case`` and StudyDescription ``"SYNTHETIC DEMO - pneumocam"``.
    UIDs are derived from the patient id, so the bytes depend on the image and case alone.
    """
    from pydicom import config as pydicom_config
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        JPEGBaseline8Bit,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 2-D array
        raise RuntimeError("JPEG encoding failed")
    pid = case.patient_id

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[GENERATOR_NAME, pid, kind])

    sop = uid("sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PNEUMOCAM_DEMO"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyDate = "19010101"
    ds.StudyTime = "000000.00"
    ds.AccessionNumber = ""
    ds.Modality = "CR"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.SeriesDescription = f"view: {case.view}"
    ds.PatientName = "Anonymous"
    ds.PatientID = pid
    ds.PatientBirthDate = ""
    ds.PatientSex = case.sex
    # RSNA writes the age as a bare number ("51"), not DICOM's "051Y": keep it, without the warning
    ds.add(DataElement(0x00101010, "AS", str(case.age), validation_mode=pydicom_config.IGNORE))
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = case.view
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ImageComments = "Synthetic radiograph drawn by pneumocam.demo; no real patient."
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.PixelSpacing = [0.139, 0.139] if case.view == "AP" else [0.143, 0.143]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Dataset writer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    index: int
    case: CaseSpec
    boxes: tuple[tuple[float, float, float, float], ...]
    findings: tuple[str, ...]
    nbytes: int


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def _make_image(images_dir: Path, seed: int, index: int, config: DemoConfig) -> _Record:
    rng = case_rng(seed, index)
    case = sample_case(rng)
    rad = render_case(case, rng, config)
    if len(rad.boxes) != case.n_boxes:  # pragma: no cover - one box per opacity by construction
        raise RuntimeError(f"image {index}: {len(rad.boxes)} boxes for {case.n_boxes} opacities")
    data = encode_dicom(rad.image, case, config.jpeg_quality)
    _write_atomic(images_dir / f"{case.patient_id}.dcm", data)
    return _Record(index, case, tuple(rad.boxes), tuple(rad.findings), len(data))


def _make_chunk(images_dir: str, seed: int, start: int, stop: int,
                config: DemoConfig) -> list[_Record]:
    cv2.setNumThreads(1)  # one process per core already
    return [_make_image(Path(images_dir), seed, i, config) for i in range(start, stop)]


def _fmt(x: float) -> str:
    return f"{float(x):.1f}"


def _write_csvs(out: Path, records: Sequence[_Record]) -> tuple[int, int]:
    """Write the labels and class-info CSVs (atomically); returns (label rows, class rows)."""
    labels = [",".join(LABELS_HEADER)]
    classes = [",".join(CLASS_INFO_HEADER)]
    for rec in records:
        pid = rec.case.patient_id
        if rec.case.target:
            for x, y, w, h in rec.boxes:
                labels.append(f"{pid},{_fmt(x)},{_fmt(y)},{_fmt(w)},{_fmt(h)},1")
                classes.append(f"{pid},{rec.case.label_class}")
        else:
            labels.append(f"{pid},,,,,0")
            classes.append(f"{pid},{rec.case.label_class}")
    _write_atomic(out / LABELS_CSV, ("\n".join(labels) + "\n").encode())
    _write_atomic(out / CLASS_INFO_CSV, ("\n".join(classes) + "\n").encode())
    return len(labels) - 1, len(classes) - 1


def _counts(records: Sequence[_Record]) -> dict[str, Any]:
    classes = Counter(r.case.label_class for r in records)
    views = Counter(r.case.view for r in records)
    pos_by_view = Counter(r.case.view for r in records if r.case.target)
    n_boxes = sum(len(r.boxes) for r in records)
    return {
        "images": len(records),
        "positive": int(sum(r.case.target for r in records)),
        "boxes": n_boxes,
        "label_rows": n_boxes + sum(1 for r in records if not r.case.target),
        "classes": {c: classes.get(c, 0) for c in CLASSES},
        "views": {v: views.get(v, 0) for v in VIEWS},
        "positive_by_view": {v: pos_by_view.get(v, 0) for v in VIEWS},
        "boxes_per_positive": dict(sorted(Counter(len(r.boxes) for r in records if r.case.target).items())),
        "sex": dict(sorted(Counter(r.case.sex for r in records).items())),
        "age_mean": float(np.mean([r.case.age for r in records])) if records else None,
        "findings": dict(sorted(Counter(f for r in records for f in r.findings).items())),
        "mean_dicom_kb": float(np.mean([r.nbytes for r in records]) / 1024) if records else None,
    }


is_demo_dataset = rsna.is_demo_dataset


def read_demo_info(data_dir: str | Path) -> dict[str, Any] | None:
    """The dataset's ``demo_info.json`` as a dict, or None when absent or unreadable."""
    try:
        return json.loads((Path(data_dir) / DEMO_INFO_JSON).read_text())
    except (OSError, ValueError):
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _identity(n: int, seed: int, config: DemoConfig) -> dict[str, Any]:
    """What makes two generations produce the same files."""
    return json.loads(json.dumps({
        "generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION,
        "n": int(n), "seed": int(seed), "parameters": config.to_dict(),
    }))


def _same_dataset(out: Path, identity: dict[str, Any]) -> bool:
    info = read_demo_info(out)
    if info is None or any(info.get(k) != v for k, v in identity.items()):
        return False
    images = out / TRAIN_IMAGES_DIR
    return (out / LABELS_CSV).is_file() and (out / CLASS_INFO_CSV).is_file() and \
        images.is_dir() and sum(1 for _ in images.glob("*.dcm")) == identity["n"]


def _describe(identity: dict[str, Any]) -> str:
    """``n=.., seed=..`` (and "other parameters" when only those differ) for messages."""
    return f"n={identity.get('n')}, seed={identity.get('seed')}"


def _recorded_identity(out: Path) -> dict[str, Any]:
    """The identity of the dataset in ``out``: its demo_info.json, else its in-progress marker."""
    info = read_demo_info(out)
    if info is None:
        try:
            info = json.loads((out / IN_PROGRESS_MARKER).read_text())
        except (OSError, ValueError):
            info = None
    return info if isinstance(info, dict) else {}


def _own_dicom_names(out: Path, identity: dict[str, Any]) -> set[str]:
    """File names of the DICOMs an earlier generation wrote in ``out``.

    The patient ids listed in its labels CSV, plus the ids its recorded n and seed draw (an id
    is the first draw of :func:`case_rng`, so a killed run's files are known without its CSV).
    """
    names: set[str] = set()
    with contextlib.suppress(OSError, csv.Error, UnicodeDecodeError):
        with open(out / LABELS_CSV, newline="") as fh:
            names.update(f"{row['patientId']}.dcm" for row in csv.DictReader(fh)
                         if row.get("patientId"))
    n, seed = identity.get("n"), identity.get("seed")
    if isinstance(n, int) and isinstance(seed, int) and n > 0 and seed >= 0:
        names.update(f"{_patient_id(case_rng(seed, i))}.dcm" for i in range(n))
    return names


def _prepare_out_dir(out: Path, identity: dict[str, Any], overwrite: bool = False) -> None:
    """Refuse foreign folders and complete demo sets of another identity (unless ``overwrite``);
    mark ``out`` as a demo dataset in progress; delete the earlier generation's own files.

    Only the demo's own files go: its CSVs, demo_info.json, its DICOMs (by name) and their
    temporaries; anything else in the folder stays. The in-progress marker is written before
    anything is deleted, so a run killed at any point leaves a folder that the next run
    recognises as its own (and never one that looks complete).
    """
    if out.exists() and not out.is_dir():
        raise DataSourceError(f"{out} is a file, not a folder. Pass --out with a folder path.")
    if out.is_dir() and any(out.iterdir()):
        ours = is_demo_dataset(out) or (out / IN_PROGRESS_MARKER).is_file()
        if not ours:
            raise DataSourceError(
                f"{out} is not empty and holds no demo dataset ({DEMO_INFO_JSON} missing); refusing "
                "to write synthetic files beside what may be real data. Choose an empty or new "
                "folder (e.g. the default data/demo), or empty this one yourself."
            )
    earlier = _recorded_identity(out) if out.is_dir() else {}
    if is_demo_dataset(out) and not overwrite:
        # A finished dataset is someone's data: replacing it takes an explicit --overwrite.
        what = (_describe(earlier) if _describe(earlier) != _describe(identity)
                else f"{_describe(earlier)} but other generator parameters or files")
        raise DataSourceError(
            f"{out} already holds a demo dataset with {what}; this run asks for "
            f"{_describe(identity)}. Run with --overwrite to replace it (only the demo's own "
            f"files are deleted), or choose another --out."
        )
    own = _own_dicom_names(out, earlier) if out.is_dir() else set()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / IN_PROGRESS_MARKER, {"synthetic": True, **identity})
    (out / DEMO_INFO_JSON).unlink(missing_ok=True)
    for name in (LABELS_CSV, CLASS_INFO_CSV):
        (out / name).unlink(missing_ok=True)
    images = out / TRAIN_IMAGES_DIR
    if images.is_dir():
        for f in images.iterdir():
            # atomic_write's temporaries are ".<name>.<random>.tmp"
            temp_of = f.name[1:].rsplit(".", 2)[0] if f.name.startswith(".") and \
                f.name.endswith(".tmp") else None
            if (f.name in own or temp_of in own) and f.is_file():
                f.unlink()


def make_demo_dataset(out_dir: str | Path, n: int = DEMO_DEFAULT_N, seed: int = 0,
                      workers: int | None = None, config: DemoConfig | None = None,
                      progress: bool = True, chunk_size: int = 25,
                      overwrite: bool = False) -> dict[str, Any]:
    """Write a synthetic RSNA-format dataset of ``n`` images to ``out_dir``.

    Args:
        out_dir: target folder; must be empty, absent, or an earlier demo dataset: kept as it
            is when it already has the same n, seed and parameters, replaced when it is
            incomplete (a killed run) or with ``overwrite``, refused otherwise.
        n: number of images (patients).
        seed: dataset seed; image ``i`` is drawn from ``(seed, i)`` alone.
        workers: processes (None: all CPUs; 1: in this process). Output is identical for any.
        config: rendering knobs.
        progress: show a tqdm bar.
        chunk_size: images per task sent to a worker.
        overwrite: replace a complete demo dataset of another n, seed or parameters (only its
            own files are deleted; anything else in the folder stays).

    Worker processes are started with the ``spawn`` method (safe beside threads, e.g. in a
    notebook or after importing torch), so a script that calls this with ``workers != 1`` needs
    the usual ``if __name__ == "__main__":`` guard.

    Returns:
        Summary dict: ``out_dir``, ``n``, ``seed``, ``skipped`` (True when the folder already
        held this exact dataset), ``counts``, ``elapsed_s``, ``images_per_s``, ``workers``.

    Raises:
        DataSourceError: ``out_dir`` is not empty and not a demo dataset, or holds a complete
            demo dataset of another identity (without ``overwrite``).
        ConfigError: ``n`` < 1, ``seed`` < 0 or ``workers`` < 1 (named by their flags).
    """
    config = config or DemoConfig()
    if not _is_int(n) or int(n) < 1:
        raise ConfigError(f"--n: expected a positive integer, got {n}.")
    if not _is_int(seed) or int(seed) < 0:
        raise ConfigError(f"--seed: expected a non-negative integer, got {seed}.")
    if workers is not None and (not _is_int(workers) or int(workers) < 1):
        raise ConfigError(f"--workers: expected a positive integer, got {workers}.")
    out = Path(out_dir)
    identity = _identity(n, seed, config)
    if out.is_dir() and _same_dataset(out, identity):
        info = read_demo_info(out) or {}
        return {"out_dir": str(out), "n": int(n), "seed": int(seed), "skipped": True,
                "counts": info.get("counts"), "elapsed_s": 0.0, "images_per_s": None,
                "workers": 0}
    _prepare_out_dir(out, identity, overwrite)
    images_dir = out / TRAIN_IMAGES_DIR
    images_dir.mkdir(exist_ok=True)

    n = int(n)
    n_workers = min(int(workers or os.cpu_count() or 1), max(1, math.ceil(n / chunk_size)))
    chunks = [(s, min(n, s + chunk_size)) for s in range(0, n, chunk_size)]
    t0 = time.perf_counter()
    records: list[_Record] = []
    bar = tqdm(total=n, desc="demo images", unit="img", disable=not progress)
    try:
        if n_workers == 1:
            for s, e in chunks:
                records.extend(_make_chunk(str(images_dir), seed, s, e, config))
                bar.update(e - s)
        else:
            # spawn: safe when the caller holds threads (torch, notebooks); workers import this module
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_make_chunk, str(images_dir), seed, s, e, config)
                           for s, e in chunks]
                for fut in as_completed(futures):
                    part = fut.result()
                    records.extend(part)
                    bar.update(len(part))
    finally:
        bar.close()
    records.sort(key=lambda r: r.index)
    label_rows, class_rows = _write_csvs(out, records)
    elapsed = time.perf_counter() - t0
    counts = _counts(records)
    info = {
        "synthetic": True,
        **identity,
        "counts": counts,
        "layout": {"labels": LABELS_CSV, "class_info": CLASS_INFO_CSV, "images": TRAIN_IMAGES_DIR},
        "reference_statistics": to_jsonable(asdict(RSNA_STAGE2_TRAIN)),
        "study_description": STUDY_DESCRIPTION,
        "note": "Synthetic chest radiographs drawn by pneumocam.demo; no real patient data. "
                "Results on these images say nothing about real radiographs.",
        "elapsed_s": round(elapsed, 2),
        "workers": n_workers,
        "provenance": provenance(),
    }
    assert label_rows == class_rows == counts["label_rows"]
    write_json_atomic(out / DEMO_INFO_JSON, info)  # last: marks the dataset complete
    (out / IN_PROGRESS_MARKER).unlink(missing_ok=True)
    return {"out_dir": str(out), "n": n, "seed": int(seed), "skipped": False, "counts": counts,
            "elapsed_s": elapsed, "images_per_s": n / elapsed if elapsed > 0 else None,
            "workers": n_workers}
