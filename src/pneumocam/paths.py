"""The project's fixed folders, resolved from the repository root, never from the cwd.

Every stage reads and writes under these folders:

- ``data/rsna-pneumonia-detection-challenge/``  the real RSNA files (user-provided)
- ``data/demo/``                                the synthetic RSNA-format dataset (made on demand)
- ``data/Processed/``                           224x224 uint8 arrays, manifest, stats
- ``weights/<run>/``                            checkpoints and the run's config.json
- ``metrics/``                                  per-run CSV/JSON tables
- ``images/``                                   every figure a person looks at

The root is the folder holding ``pyproject.toml`` above this file (an editable install).
``PNEUMOCAM_ROOT`` overrides it, which tests use to keep outputs in a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV_VAR = "PNEUMOCAM_ROOT"


def _find_repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "pneumocam").is_dir():
            return parent
    # Installed non-editable: fall back to the working directory (documented in the README).
    return Path.cwd()


def repo_root() -> Path:
    """The repository root: ``$PNEUMOCAM_ROOT`` if set, else the checkout this package lives in."""
    override = os.environ.get(ROOT_ENV_VAR)
    return Path(override).resolve() if override else _find_repo_root()


def data_dir() -> Path:
    return repo_root() / "data"


def rsna_dir() -> Path:
    """Where the real Kaggle RSNA files go (see the README)."""
    return data_dir() / "rsna-pneumonia-detection-challenge"


def demo_dir() -> Path:
    """Where the synthetic RSNA-format demo dataset is generated."""
    return data_dir() / "demo"


def processed_dir() -> Path:
    return data_dir() / "Processed"


def weights_dir() -> Path:
    return repo_root() / "weights"


def metrics_dir() -> Path:
    return repo_root() / "metrics"


def images_dir() -> Path:
    return repo_root() / "images"


def run_weights_dir(run: str) -> Path:
    """``weights/<run>/``: best.pth, last.pth, config.json."""
    return weights_dir() / run


def run_files(run: str) -> dict[str, Path]:
    """Every file a training run writes, by role (what training, comparison and evaluation read).

    ``weights_dir``, ``best``, ``last``, ``config`` under ``weights/<run>/``; ``csv`` (the
    per-epoch history), ``pred_val``, ``pred_test`` (per-image probabilities) and ``eval``
    (the test-set evaluation) under ``metrics/``.
    """
    wdir = run_weights_dir(run)
    mdir = metrics_dir()
    return {
        "weights_dir": wdir,
        "best": wdir / "best.pth",
        "last": wdir / "last.pth",
        "config": wdir / "config.json",
        "csv": mdir / f"{run}.csv",
        "pred_val": mdir / f"{run}_predictions_val.csv",
        "pred_test": mdir / f"{run}_predictions_test.csv",
        "eval": mdir / f"{run}_eval.json",
    }


def run_images_dir(run: str) -> Path:
    """``images/<run>/``: training curves, ROC/PR, confusion matrix, reliability diagram."""
    return images_dir() / run


def cam_images_dir(run: str) -> Path:
    """``images/cam/<run>/``: one CAM overlay per chosen image."""
    return images_dir() / "cam" / run
