"""Helpers shared by the test files (``from helpers import ...``); the shared fixtures built on
them are in ``conftest.py``.

- :func:`make_processed`: a tiny processed dataset (no DICOM, no preprocessing code), written
  per the ``data/Processed`` contract of ``pneumocam.processed``: ``{split}/{label}/<id>.npy``
  uint8 arrays, ``manifest.csv`` and ``stats.json``. Positives carry a bright blob on a noisy
  dark background, so a ResNet-18 can learn the task in a few epochs even at 32x32.
- :func:`run_script`: one of ``scripts/*.py`` in a subprocess, as a person runs it, with the
  project's outputs under a given root.
- :func:`predict_proba`: probabilities of a model for uint8 images (only tests need it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from pneumocam import paths
from pneumocam.processed import MANIFEST_COLUMNS, array_relpath
from pneumocam.train import final_probabilities

REPO = Path(__file__).resolve().parents[1]

BLOB_CONTRAST = 30  # grey levels added inside the disc; the noise sd is 30


def blob_image(rng: np.random.Generator, size: int, positive: bool) -> np.ndarray:
    """uint8 (size, size): dark noise, plus a faint disc of radius ~size/6 when positive
    (faint enough that a few epochs do not make validation perfect)."""
    img = rng.normal(60, 30, (size, size))
    if positive:
        r = size / 6
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        yy, xx = np.mgrid[:size, :size]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += BLOB_CONTRAST
    return np.clip(img, 0, 255).astype(np.uint8)


def make_processed(root: Path, n_train: int = 48, n_val: int = 16, n_test: int = 16,
                   size: int = 32, pos_frac: float = 0.25, seed: int = 0, kind: str = "demo",
                   one_class_split: str | None = None) -> Path:
    """Write a processed folder at ``root/data/Processed`` and return its path.

    Args:
        one_class_split: make this split all negative (for the one-class error test).
    """
    rng = np.random.default_rng(seed)
    out = Path(root) / "data" / "Processed"
    rows, sums, sq, n_px = [], 0.0, 0.0, 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        n_pos = 0 if split == one_class_split else max(1, int(round(n * pos_frac)))
        for i in range(n):
            label = int(i < n_pos)
            pid = f"{split}-{i:04d}"
            img = blob_image(rng, size, bool(label))
            rel = array_relpath(split, label, pid)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / rel, img)
            if split == "train":
                f = img.astype(np.float64) / 255
                sums, sq, n_px = sums + f.sum(), sq + (f * f).sum(), n_px + f.size
            rows.append({
                "patientId": pid, "split": split, "label": label,
                "class": "Lung Opacity" if label else ("Normal" if i % 2 else
                                                       "No Lung Opacity / Not Normal"),
                "view_position": "AP" if i % 3 == 0 else "PA", "sex": "M" if i % 2 else "F",
                "age": 40 + i % 30,
                "boxes": json.dumps([[4, 4, 8, 8]] if label else []),
                "source_file": f"stage_2_train_images/{pid}.dcm", "array_file": rel,
            })
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(out / "manifest.csv", index=False)
    mean = sums / n_px
    std = float(np.sqrt(sq / n_px - mean * mean))
    counts = {s: {"0": int(((manifest.split == s) & (manifest.label == 0)).sum()),
                  "1": int(((manifest.split == s) & (manifest.label == 1)).sum())}
              for s in ("train", "val", "test")}
    stats = {"mean": float(mean), "std": std, "size": size,
             "source": {"kind": kind, "path": str(Path(root) / "data" / "demo")},
             "counts": counts, "parameters": {"size": size}, "provenance": {}}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return out


def script_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a script run: this one, with the project's outputs under ``root``."""
    return {**os.environ, paths.ROOT_ENV_VAR: str(root), **extra}


def run_script(name: str, *args: str, root: Path, timeout: float = 300,
               **extra_env: str) -> subprocess.CompletedProcess:
    """``python scripts/<name> <args>`` with outputs under ``root``; output captured as text."""
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args],
                          env=script_env(root, **extra_env), capture_output=True, text=True,
                          timeout=timeout)


def predict_proba(model: nn.Module, images: np.ndarray, mean: float, std: float,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Pneumonia probabilities for uint8 (N, H, W) images: float64 (N,) in [0, 1], computed
    as the final evaluation computes them (float32 on every device).

    Normalises with the training split's ``mean``/``std`` (stats.json); no augmentation.
    """
    return final_probabilities(model, images, mean, std, torch.device(device))
