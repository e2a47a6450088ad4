"""notebooks/01-Preprocess.ipynb runs top to bottom on a tiny demo profile."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers import REPO
from notebook_runner import cell_text, inject_parameters, run_notebook

from pneumocam.processed import read_manifest, read_stats

NOTEBOOK = REPO / "notebooks" / "01-Preprocess.ipynb"


def test_inject_parameters_replaces_an_earlier_injection() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    n = len(nb.cells)
    i = inject_parameters(nb, {"size": 32, "out_dir": Path("/x")})
    assert len(nb.cells) == n + 1 and "size = 32" in nb.cells[i].source
    assert "out_dir = '/x'" in nb.cells[i].source
    assert inject_parameters(nb, {"size": 48}) == i and len(nb.cells) == n + 1
    with pytest.raises(ValueError, match="not a Python identifier"):
        inject_parameters(nb, {"not valid": 1})


@pytest.mark.slow
def test_notebook_runs_on_tiny_demo_profile(tmp_path: Path) -> None:
    root = tmp_path / "root"
    nb = run_notebook(NOTEBOOK, {"n_demo": 24, "size": 64, "workers": 1, "n_samples": 4},
                      cwd=REPO / "notebooks", env={"PNEUMOCAM_ROOT": str(root)}, timeout=300)
    text = cell_text(nb)
    assert "SYNTHETIC DEMO DATA" in text and "synthetic demo data" in text
    processed = root / "data" / "Processed"
    stats = read_stats(processed)
    assert stats["source"]["kind"] == "demo" and stats["size"] == 64
    assert stats["source"]["path"] == "data/demo"  # relative to the repository root
    assert stats["source"]["abs_path"] == str((root / "data" / "demo").resolve())
    assert len(read_manifest(processed)) == 24
    # one DICOM by hand: header fields, each step's dtype/shape/range, its figure
    assert "8-bit MONOCHROME2, JPEG Baseline" in text and "view " in text
    assert "stored pixels:        uint8 (1024, 1024)" in text
    assert "after modality + VOI: float32 (1024, 1024)" in text
    assert "stored array:         uint8 (64, 64)" in text
    assert "boxes [x, y, w, h] in output pixels:" in text
    for name in ("samples.png", "counts.png", "one_dicom.png"):
        png = root / "images" / "preprocess" / name
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    views = (root / "metrics" / "preprocess_view_positions.csv").read_text()
    assert views.startswith("view_position,images,share,positive,positive_rate")
    # the figures were displayed inline, and nothing was written to the notebook on disk
    assert any("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))
    assert not any(c.get("outputs") for c in json.loads(NOTEBOOK.read_text())["cells"]
                   if c["cell_type"] == "code")
