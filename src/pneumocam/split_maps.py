"""A run's maps over a split: which processed folder to read, its boxes, and the maps themselves.

:func:`compute_split_maps` runs :func:`pneumocam.cam.compute_cams` over a split's uint8 arrays a
bounded number of images at a time, so a split of any size fits in memory: the normalised maps
are kept for overlays and detection, the raw (signed) maps only for the rows localization
measures (the positives with boxes), and optionally all raw maps stream to a memory map.

The interpretation stage (:mod:`pneumocam.interpret`), the cascading sanity check
(:mod:`pneumocam.sanity`) and the side-by-side comparison (:mod:`pneumocam.localization_comparison`)
all read a run's data through :func:`resolve_data_folder`, :func:`manifest_boxes` and
:func:`positives_with_boxes`; the interpretation stage and the method comparison
(:mod:`pneumocam.method_comparison`) hold each split as a :class:`SplitWithBoxes`, check it
with :func:`check_measurable_split` and build their baselines from :func:`training_boxes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import paths
from .cam import compute_cams
from .errors import ProcessedDataError
from .predict import LoadedRun, normalize_images, warn
from .processed import SplitArrays, load_split, run_data_dir
from .train import exact_fp32


@dataclass
class SplitMaps:
    """A split's model outputs.

    Attributes:
        probs: float32 (N,) in [0, 1]. logits: float32 (N,).
        maps: float32 (N, H, W) in [0, 1], the normalised maps (``CamResult.normalized``).
        raw: float32 (K, H, W), the raw signed maps of the K rows chosen by ``keep_raw``
            (the positives: localization measures positive evidence on them).
        low: float32 (N, h, w), every image's signed map at feature resolution
            (``CamResult.low``, 49 values per image at 224 px): where the pointing game and the
            overlays take the peak (:func:`pneumocam.localization.peak_yx`).
    """

    probs: np.ndarray
    maps: np.ndarray
    logits: np.ndarray
    raw: np.ndarray
    low: np.ndarray


def compute_split_maps(run: LoadedRun, images: np.ndarray, method: str, batch_size: int,
                       keep_raw: np.ndarray | None = None,
                       raw_out: np.ndarray | None = None) -> SplitMaps:
    """Probabilities and maps of uint8 images (N, H, W), a bounded number of images at a time.

    Args:
        keep_raw: bool (N,): rows whose raw maps are kept in memory (None: none).
        raw_out: optional float32 (N, H, W) array (e.g. a memory map) receiving every raw map.
    """
    n = len(images)
    keep = np.zeros(n, bool) if keep_raw is None else np.asarray(keep_raw, bool)
    probs = np.empty(n, np.float32)
    logits = np.empty(n, np.float32)
    maps = np.empty((n, *images.shape[1:]), np.float32)
    raw = np.empty((int(keep.sum()), *images.shape[1:]), np.float32)
    slot = np.cumsum(keep) - 1  # row i's place in ``raw`` when kept
    low: list[np.ndarray] = []  # small (h x w per image): one array per chunk, joined at the end
    batch_size = max(1, int(batch_size))
    # Several batches per call keep the GPU's copy pipeline busy; the float copy stays bounded.
    step = batch_size * max(1, 1024 // batch_size)
    for start in range(0, n, step):
        stop = min(n, start + step)
        x = normalize_images(images[start:stop], run.mean, run.std)
        # fp32 without TF32, like the evaluation's probabilities (train.final_probabilities):
        # the operating threshold was chosen on those, so each image's decision agrees.
        with exact_fp32():
            res = compute_cams(run.model, x, method=method, batch_size=batch_size)
        probs[start:stop] = to_numpy(res.probs)
        logits[start:stop] = to_numpy(res.logits)
        maps[start:stop] = to_numpy(res.normalized)
        low.append(to_numpy(res.low))
        res_raw = to_numpy(res.raw)
        rows = np.flatnonzero(keep[start:stop])
        raw[slot[start + rows]] = res_raw[rows]
        if raw_out is not None:
            raw_out[start:stop] = res_raw
    return SplitMaps(probs=probs, maps=maps, logits=logits, raw=raw,
                     low=np.concatenate(low) if low else np.empty((0, 0, 0), np.float32))


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (on any device) or array-like as a NumPy array on the host."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        return x.numpy()
    return np.asarray(x)


def manifest_boxes(manifest: pd.DataFrame) -> list[list[list[float]]]:
    """Each manifest row's boxes as ``[[x, y, w, h], ...]`` floats in array pixels ([] if none)."""
    return [[[float(v) for v in b] for b in boxes] for boxes in manifest["boxes"]]


def positives_with_boxes(labels: np.ndarray, boxes: Sequence[Sequence]) -> np.ndarray:
    """bool (N,): positive images that have at least one box (localization needs a box)."""
    return (np.asarray(labels) == 1) & np.array([len(b) > 0 for b in boxes], dtype=bool)


def resolve_data_folder(data_dir: str | Path | None, run: LoadedRun) -> Path:
    """The processed folder to read: the one given, else the one the run was trained on (its
    ``config.json``, :func:`pneumocam.processed.run_data_dir`) when it still holds data, else
    data/Processed. Whichever it is, :func:`pneumocam.processed.check_run_data` vets it."""
    if data_dir:
        return Path(data_dir)
    trained = run_data_dir(run.config)
    if trained is not None and (trained / "stats.json").is_file():
        return trained
    if trained is not None:
        warn(f"{trained} (the folder {run.name} was trained on, from its config.json) holds no "
             f"processed data; reading {paths.processed_dir()} instead.")
    return paths.processed_dir()


# --------------------------------------------------------------------------- a split and its boxes

@dataclass
class SplitWithBoxes:
    """A loaded split with its boxes, the unit the interpretation and the method comparison
    measure.

    Attributes:
        data: the split's uint8 images (N, H, W), 0/1 labels (N,) and manifest rows.
        boxes: per image, its boxes ``[[x, y, w, h], ...]`` as floats in array pixels
            ([] for none).
        pos: bool (N,): the positives that have at least one box, the images localization is
            measured on.
    """

    data: SplitArrays
    boxes: list[list[list[float]]]
    pos: np.ndarray

    @classmethod
    def load(cls, data_dir: Path, split: str, manifest: pd.DataFrame, limit: int | None
             ) -> SplitWithBoxes:
        """``split`` of ``data_dir`` (the first ``limit`` images, None: all), with its boxes.

        Raises:
            ProcessedDataError: unknown or empty split, a missing array
                (:func:`pneumocam.processed.load_split`).
        """
        data = load_split(data_dir, split, manifest, limit=limit)
        boxes = manifest_boxes(data.manifest)
        return cls(data, boxes, positives_with_boxes(data.labels, boxes))

    @property
    def ids(self) -> list[str]:
        """The N patient ids, in the split's order."""
        return self.data.manifest["patientId"].astype(str).tolist()

    @property
    def pos_idx(self) -> np.ndarray:
        """int (K,): the rows of :attr:`pos`, ascending."""
        return np.flatnonzero(self.pos)

    @property
    def pos_boxes(self) -> list[list[list[float]]]:
        """The K measured positives' box lists, in :attr:`pos_idx` order."""
        return [self.boxes[i] for i in self.pos_idx]


def training_boxes(manifest: pd.DataFrame, data_dir: Path) -> list[list[list[float]]]:
    """The box lists (``[[x, y, w, h], ...]`` floats, array pixels) of the positive training
    images that have a box: the prior of the localization baselines.

    Raises:
        ProcessedDataError: no positive training image has a box (names ``data_dir``).
    """
    train = manifest[manifest["split"] == "train"]
    boxes = manifest_boxes(train)
    keep = positives_with_boxes(train["label"], boxes)
    train_boxes = [b for b, k in zip(boxes, keep, strict=True) if k]
    if not train_boxes:
        raise ProcessedDataError(f"{data_dir}: no positive training image with a box; the "
                                 "localization baselines are built from the training boxes.")
    return train_boxes


def check_measurable_split(split: SplitWithBoxes, name: str, data_dir: Path, run: LoadedRun
                           ) -> None:
    """Warn when the arrays' size differs from the run's training size; refuse a split with
    nothing to measure.

    Args:
        name: the split's name (``"val"``, ``"test"``), for the message.

    Raises:
        ProcessedDataError: no positive image of ``split`` has a box.
    """
    if split.data.images.shape[1] != run.size:
        warn(f"{data_dir} holds {split.data.images.shape[1]} px images but {run.name} was "
             f"trained on {run.size} px.")
    if not split.pos.any():
        raise ProcessedDataError(
            f"{data_dir}: the {name!r} split has no positive image with a box, so there is "
            "nothing to measure the maps against. Use a larger split (or drop --limit).")
