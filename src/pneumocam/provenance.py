"""What produced a result: library versions, git commit, host; saved beside every output.

Also the JSON files' one writer (:func:`write_json_atomic`) and tolerant readers
(:func:`read_json_object`, :func:`json_get`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import paths
from .atomic import atomic_write

_DISTRIBUTIONS = (
    "pneumocam", "torch", "torchvision", "numpy", "pandas", "scikit-learn", "pydicom",
    "pillow", "pylibjpeg", "pylibjpeg-openjpeg", "python-gdcm", "opencv-python-headless",
    "matplotlib", "grad-cam",
)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape results (None when absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository at ``root``
    (default: the checkout of the code that runs, not the outputs' ``$PNEUMOCAM_ROOT``)."""
    root = root or paths.code_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10,
        )
        return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str | None:
    """The CPU's model name as ``lscpu`` shows it (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_capability() -> dict[str, Any]:
    """The vector ISA PyTorch's CPU kernels use (``AVX512``, ``AVX2``, ...) and the variables
    that cap it: results and timings differ between CPU kinds, so each result names its own."""
    found: dict[str, Any] = {name: os.environ[name] for name in
                             ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if name in os.environ}
    torch = sys.modules.get("torch")  # only where torch is already loaded: no import cost here
    if torch is not None:
        try:
            found["aten"] = torch.backends.cpu.get_cpu_capability()
        except (AttributeError, RuntimeError):
            pass
    return found


def provenance() -> dict[str, Any]:
    """Versions, git commit, host and time: the block every config/stats JSON carries."""
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "git": git_commit(),
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                 "cpu_model": cpu_model(), "cpu_capability": cpu_capability()},
        "command": " ".join(sys.argv),
    }


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, Paths and numpy scalars -> plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing, unreadable (any OS error, bytes
    that are not UTF-8, not JSON) or not an object: what a reader that can do without the file
    (a report, the pipeline's "is this stage done" check) needs."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # ValueError: JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


def json_get(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]...`` through nested mappings (a JSON document read back), or None as soon
    as a level is missing or is not a mapping."""
    for key in keys:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON via a temporary file and an atomic rename."""
    path = Path(path)
    with atomic_write(path) as fh:
        json.dump(to_jsonable(obj), fh, indent=2, allow_nan=True)
        fh.write("\n")
    return path
