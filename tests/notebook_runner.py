"""Execute a notebook top to bottom with injected parameters (papermill-style), for tests.

The notebook's first code cell tagged ``parameters`` holds the default profile; the parameters
given here go into a new cell tagged ``injected-parameters`` right after it (replacing one left
from an earlier injection), so later assignments win. The kernel is this interpreter's
``python3`` kernel, started in ``cwd`` with ``env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def inject_parameters(nb: nbformat.NotebookNode, parameters: Mapping[str, Any]) -> int:
    """Insert (or replace) the ``injected-parameters`` cell; returns its index.

    Values are written with ``repr`` (str, int, float, bool, None, lists, dicts and ``Path`` all
    round-trip; ``Path`` values become strings). Raises ``ValueError`` when the notebook has no
    ``parameters``-tagged cell.
    """
    lines = ["# Parameters injected by tests/notebook_runner.py"]
    for name, value in parameters.items():
        if not name.isidentifier():
            raise ValueError(f"parameter name {name!r} is not a Python identifier")
        lines.append(f"{name} = {str(value)!r}" if isinstance(value, os.PathLike)
                     else f"{name} = {value!r}")
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    cells = nb.cells
    for i, c in enumerate(cells):
        if INJECTED_TAG in _tags(c):
            cells[i] = cell
            return i
    for i, c in enumerate(cells):
        if c.cell_type == "code" and PARAMETERS_TAG in _tags(c):
            cells.insert(i + 1, cell)
            return i + 1
    raise ValueError("the notebook has no code cell tagged 'parameters'")


def run_notebook(path: str | Path, parameters: Mapping[str, Any] | None = None,
                 cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                 timeout: int = 600, kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Execute the ``.ipynb`` at ``path`` and return the executed notebook (outputs filled in).

    Args:
        path: the notebook; it is read, never written.
        parameters: values injected after the ``parameters`` cell.
        cwd: the kernel's working directory (default: the notebook's folder).
        env: extra environment variables for the kernel, added to ``os.environ``
            (e.g. ``{"PNEUMOCAM_ROOT": str(tmp_path)}``).
        timeout: seconds allowed per cell.
        kernel_name: Jupyter kernel to start.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message holds its traceback.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if parameters:
        inject_parameters(nb, parameters)
    full_env = {**os.environ, **(env or {})}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel_name,
        resources={"metadata": {"path": str(cwd or path.parent)}},
    )
    client.execute(env=full_env)
    return nb


def cell_text(nb: nbformat.NotebookNode) -> str:
    """All text outputs (stdout, stderr, text/plain results) of an executed notebook, joined."""
    parts: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)
