"""Fixtures shared by the test files; the plain helpers they use are in ``helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_processed

from pneumocam import paths


@pytest.fixture
def project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project root: ``data/``, ``weights/``, ``metrics/`` and ``images/`` of every
    ``pneumocam.paths`` call point under ``tmp_path`` for this test."""
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path))
    return tmp_path


@pytest.fixture
def tiny_root(project_root: Path) -> Path:
    """:func:`project_root` holding a tiny processed dataset in ``data/Processed``
    (48/16/16 images of 32x32, a quarter positive: :func:`helpers.make_processed`)."""
    make_processed(project_root)
    return project_root
