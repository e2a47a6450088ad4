"""Safe checkpoint I/O: atomic saves, ``torch.load(..., weights_only=True)`` loads.

A checkpoint that holds anything but tensors and plain containers (a pickled object that
could run code) is refused with :class:`CheckpointError`, never executed.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from . import paths
from .atomic import atomic_write
from .errors import CheckpointError


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename.

    Raises:
        CheckpointError: the file could not be written (a full disk makes torch report
            "unexpected pos" or "file write failed"); the previous ``path`` is left as it was.
    """
    path = Path(path)
    try:
        with atomic_write(path, "wb") as fh:
            torch.save(obj, fh)
    except (OSError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: could not be written ({reason}); the previous file is unchanged. Check "
            f"free space on {path.parent} (df -h), then rerun (training: with --resume)."
        ) from exc
    return path


ZIP_MAGIC = b"PK\x03\x04"  #: torch.save's format since PyTorch 1.6 is a zip archive
PICKLE_MAGIC = b"\x80"  #: the legacy format is a pickle stream (protocol >= 2 starts with 0x80)
FIX = ("Use weights/<run>/best.pth (or last.pth) as written by this project's training scripts; "
       "re-run training if it is damaged.")


def _head(path: Path) -> bytes:
    """The first 4 bytes of ``path`` (empty for an empty file)."""
    with path.open("rb") as fh:
        return fh.read(4)


def _detail(exc: BaseException) -> str:
    """A short reason from torch's (often dozens of lines long) error message."""
    text = str(exc)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match:
        return f"it names {match.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(exc).__name__}: {first}"[:160] if first else type(exc).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: with a reason of its own for each case: the file is missing, a folder,
            unreadable, empty (0 bytes), not a PyTorch checkpoint at all (random bytes, text, a
            plain pickle), truncated or damaged, or a checkpoint holding pickled objects other
            than tensors and plain Python containers (refused: loading would run their code).
    """
    path = Path(path)
    problem = paths.not_a_file_reason(path)
    if problem is not None:
        fix = ("Train a model first (python scripts/train_balanced.py) or pass --weights "
               "weights/<run>/best.pth." if problem.startswith("not found")
               else "Pass --weights weights/<run>/best.pth.")
        raise CheckpointError(f"{path}: checkpoint {problem}. {fix}")
    try:
        head = _head(path)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot be read ({exc.strerror or exc}); check its permissions."
        ) from exc
    if not head:
        raise CheckpointError(
            f"{path}: 0 bytes: the file is empty, probably an interrupted copy or save. {FIX}"
        )
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (it starts with {head!r}, neither the zip archive "
            f"torch.save writes nor a pickle stream). {FIX}"
        )
    try:
        with warnings.catch_warnings():  # torch warns about the protocol of any plain pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: refused to load: it is not a plain tensor checkpoint and loading it "
                f"would execute pickled code ({_detail(exc)}). Use a checkpoint written "
                "by this project's training scripts."
            ) from exc
        reason = _detail(exc)
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, IndexError... on damage
        reason = _detail(exc)
    if head.startswith(ZIP_MAGIC):
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({reason}); the file is truncated or "
            f"damaged. {FIX}"
        )
    raise CheckpointError(
        f"{path}: not a PyTorch checkpoint, or a truncated legacy one ({reason}): it is a "
        f"pickle stream that torch.load cannot read. {FIX}"
    )


def require_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse a state_dict whose floating-point tensors hold NaN or inf.

    Such weights come from a diverged run; they would give ``p = nan`` for every image.

    Raises:
        CheckpointError: naming the file, the first offending tensors and the fix.
    """
    bad = [name for name, t in state.items()
           if torch.is_floating_point(t) and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{path}: holds NaN/inf values ({shown}); the run diverged: retrain with a lower --lr."
        )


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
