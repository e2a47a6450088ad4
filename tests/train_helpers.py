"""Inference helpers for the training tests (not part of the package: only tests need them)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pneumocam.train import predict_logits


def predict_proba(model: nn.Module, images: np.ndarray, mean: float, std: float,
                  device: str | torch.device = "cpu", batch_size: int = 64) -> np.ndarray:
    """Pneumonia probabilities for uint8 (N, H, W) images: float64 (N,) in [0, 1].

    Normalises with the training split's ``mean``/``std`` (stats.json); no augmentation.
    """
    device = torch.device(device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    logits = predict_logits(model, torch.as_tensor(images), mean, std, device, batch_size,
                            channels_last=True, amp_dtype=amp)
    return torch.sigmoid(logits).double().cpu().numpy()
