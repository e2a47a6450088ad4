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

import errno
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, OutputFolderError

ROOT_ENV_VAR = "PNEUMOCAM_ROOT"

# A run name becomes one folder name (weights/<run>/) and a file prefix (metrics/<run>.csv):
# letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters.
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RUN_NAME_RULE = ("one folder name of at most 64 letters, digits, '.', '_' or '-', starting with "
                 "a letter or digit (e.g. balanced, original-lr3e-4)")


def _find_repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "pneumocam").is_dir():
            return parent
    # Installed non-editable: fall back to the working directory (documented in the README).
    return Path.cwd()


def code_root() -> Path:
    """The checkout this package's code lives in (its scripts, its git commit), whatever
    ``$PNEUMOCAM_ROOT`` says: that variable moves the outputs, not the code."""
    return _find_repo_root()


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


def check_run_name(run: str) -> str:
    """``run`` unchanged when it is a safe run name (:data:`RUN_NAME_RULE`).

    A run name is joined to ``weights/``, ``metrics/`` and ``images/``: an empty name, a path
    (``../x``, ``/tmp/x``, ``a/b``) or a name with spaces or shell characters would write
    outside those folders or into their top level.

    Raises:
        ConfigError: naming the refused value and the rule.
    """
    if not isinstance(run, str) or not RUN_NAME_PATTERN.fullmatch(run):
        raise ConfigError(f"run name {run!r} refused: a run name is {RUN_NAME_RULE}. "
                          "Pass another --run-name.")
    return run


def run_weights_dir(run: str) -> Path:
    """``weights/<run>/``: best.pth, last.pth, config.json (``run`` checked by
    :func:`check_run_name`)."""
    return weights_dir() / check_run_name(run)


def run_files(run: str) -> dict[str, Path]:
    """Every file a training run writes, by role (what training, comparison and evaluation read).

    ``weights_dir``, ``best``, ``last``, ``config`` under ``weights/<run>/``; ``csv`` (the
    per-epoch history), ``pred_val``, ``pred_test`` (per-image probabilities) and ``eval``
    (the test-set evaluation) under ``metrics/``.
    """
    wdir = run_weights_dir(run)  # checks the run name
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
    return images_dir() / check_run_name(run)


def cam_images_dir(run: str) -> Path:
    """``images/cam/<run>/``: one CAM overlay per chosen image."""
    return images_dir() / "cam" / check_run_name(run)


@dataclass(frozen=True)
class FolderProblem:
    """Why a folder cannot take output files (:func:`writable_folder_problem`).

    Attributes:
        kind: ``"file"`` (``blocker`` is a file, not a folder), ``"broken_symlink"``
            (``blocker`` is a link to nothing) or ``"unwritable"`` (creating the folder, or a
            file in it, failed).
        blocker: the path in the way: the folder itself or one of its parents (for
            ``"unwritable"``: the folder).
        reason: ``"<blocker> is a file, not a folder"``, ``"<blocker> is a broken symlink"``, or
            the operating system's words (``"Permission denied"``, ``"Read-only file system"``).
    """

    kind: str
    blocker: Path
    reason: str


def writable_folder_problem(folder: str | Path) -> FolderProblem | None:
    """Create ``folder`` if need be and prove a file can be written in it; None when it can,
    else what stops it. The one probe behind every stage's output-folder check, each of which
    words the problem for its own flag (:func:`ensure_writable_dir`, ``predict``'s
    ``--out-dir``/``--csv``, ``preprocess``'s ``--out-dir``)."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.is_symlink() and not part.exists():
            return FolderProblem("broken_symlink", part, f"{part} is a broken symlink")
        if part.exists():
            if not part.is_dir():
                return FolderProblem("file", part, f"{part} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # nothing left behind, even on a crash
            pass
    except OSError as exc:
        return FolderProblem("unwritable", folder, str(exc.strerror or exc))
    return None


def ensure_writable_dir(folder: str | Path, what: str = "output folder") -> Path:
    """Create ``folder`` if need be and check that a file can be written in it.

    Called before a stage does any work, so a read-only or misplaced output folder is
    reported up front rather than after minutes of training.

    Raises:
        OutputFolderError: ``folder`` (or a parent) is a file or a broken symlink, or cannot
            be created or written; the message names the folder and the fix.
    """
    folder = Path(folder)
    problem = writable_folder_problem(folder)
    if problem is None:
        return folder
    if problem.kind == "file":
        where = "" if problem.blocker == folder else f" ({problem.blocker} is a file)"
        raise OutputFolderError(f"{folder}: the {what} is a file, not a folder{where}. "
                                "Remove or rename that file, or choose another folder.")
    if problem.kind == "broken_symlink":
        raise OutputFolderError(f"{folder}: the {what} cannot be made ({problem.reason}). "
                                "Fix or remove the link, or choose another folder.")
    raise OutputFolderError(f"{folder}: the {what} is not writable ({problem.reason}). "
                            f"Make it writable (chmod u+w) or point the {what} elsewhere.")


def not_a_file_reason(path: Path) -> str | None:
    """Why ``path`` is not a regular file one can open (the reason and the fix), or None.

    Tells apart what ``is_file()`` lumps together as False: missing, a folder, a symlink loop, a
    broken symlink, a path through a file, a device or pipe, no permission.
    """
    try:
        mode = path.stat().st_mode  # follows symlinks: a dangling or looping link fails here
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (the link points back at itself); give the real file"
        if path.is_symlink():
            return f"broken symlink (it points to {os.readlink(path)}, which does not exist)"
        if exc.errno == errno.ENOENT:
            return "not found; check the path"
        if exc.errno == errno.ENOTDIR:
            return "not found (a part of the path is a file, not a folder); check the path"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file; give a file inside it"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket); give an image file"
    return None
