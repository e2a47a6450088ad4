"""Inference helpers for the training tests (not part of the package: only tests need them)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pneumocam.train import final_probabilities


def predict_proba(model: nn.Module, images: np.ndarray, mean: float, std: float,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Pneumonia probabilities for uint8 (N, H, W) images: float64 (N,) in [0, 1], computed
    as the final evaluation computes them (float32 on every device).

    Normalises with the training split's ``mean``/``std`` (stats.json); no augmentation.
    """
    return final_probabilities(model, images, mean, std, torch.device(device))
