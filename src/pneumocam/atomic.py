"""Writing a file so that readers see the old version or the new one, never half of one.

Every output of the project goes through one of these:

- :func:`atomic_write`: a file handle (text or bytes) for JSON, CSV, checkpoints, figures;
- :func:`atomic_path`: a temporary *path* for writers that need one (``np.lib.format.open_memmap``);
- :func:`write_frame_csv`: a pandas table as CSV.

The temporary file is ``.<name>.<random>.tmp`` in the target's folder, so the final
``os.replace`` is a rename within one file system; on any exception (Ctrl-C included) it is
deleted and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "default_file_mode", "write_frame_csv"]


def default_file_mode() -> int:
    """0666 minus the process umask: what a plain ``open(path, "w")`` would have produced."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Args:
        path: the file to (re)write; its folder is created if need be.
        fsync: flush the file's data to disk before the rename (for files a crash must not lose).

    The caller writes the temporary file (and closes it) inside the ``with`` block. The new
    file gets the permissions a plain ``open`` gives (``mkstemp`` would make 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, newline: str | None = None,
                 fsync: bool = False) -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in its folder, renamed onto it on success.

    Args:
        path: the file to (re)write; its folder is created if need be.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        newline: as for :func:`open` (text mode only; ``""`` for csv writers).
        fsync: flush the data to disk before the rename (for files a crash must not lose).

    On any exception the temporary file is deleted and ``path`` is left as it was
    (preprocessing removes stale ``.*.tmp`` files of killed runs at start).
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode, newline=newline) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())


def write_frame_csv(path: str | Path, frame: Any, **to_csv: Any) -> Path:
    """``frame.to_csv(path, **to_csv)`` (a pandas DataFrame), written atomically."""
    path = Path(path)
    with atomic_write(path, newline="") as fh:
        frame.to_csv(fh, **to_csv)
    return path
