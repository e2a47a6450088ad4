"""Every notebook is committed without outputs, opens with its parameters cell, and matches its
jupytext ``py:percent`` twin."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == ["01-Preprocess", "02-Train-Balanced",
                                           "02-Train-Original", "03-Interpretability"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_and_paired(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    # the .py twin holds the same code (jupytext pair): every code cell appears in it
    paired = notebook.with_suffix(".py").read_text()
    for cell in code:
        assert cell.source.strip() in paired
