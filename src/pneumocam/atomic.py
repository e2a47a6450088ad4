"""Writing a file so that readers see the old version or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "default_file_mode"]


def default_file_mode() -> int:
    """0666 minus the process umask: what a plain ``open(path, "w")`` would have produced."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, newline: str | None = None,
                 fsync: bool = False) -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in its folder, renamed onto it on success.

    Args:
        path: the file to (re)write; its folder is created if need be.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        newline: as for :func:`open` (text mode only; ``""`` for csv writers).
        fsync: flush the data to disk before the rename (for files a crash must not lose).

    The temporary file is ``.<name>.<random>.tmp`` beside ``path`` (preprocessing removes
    stale ones at start). On any exception it is deleted and ``path`` is left as it was.
    The new file gets the permissions a plain ``open`` gives (``mkstemp`` would make 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, newline=newline) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
