"""Safe checkpoint I/O: atomic saves, ``torch.load(..., weights_only=True)`` loads.

A checkpoint that holds anything but tensors and plain containers (a pickled object that
could run code) is refused with :class:`CheckpointError`, never executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import CheckpointError


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        torch.save(obj, fh)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, truncated, or contains pickled objects other
            than tensors and plain Python containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found. Train a model first "
            "(python scripts/train_balanced.py) or pass --weights weights/<run>/best.pth."
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor checkpoint and loading it "
            f"would execute pickled code ({str(exc).splitlines()[0]}). Use a checkpoint written "
            "by this project's training scripts."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({exc}). The file may be truncated; "
            "re-run training or use weights/<run>/last.pth."
        ) from exc


def load_model_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The model state_dict from ``best.pth`` (a bare state_dict) or ``last.pth`` (``{"model": ...}``)."""
    obj = load_checkpoint(path, map_location)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: does not hold a model state_dict (a mapping of names to tensors)."
        )
    return obj
