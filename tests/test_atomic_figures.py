"""Figures are saved atomically: a failed save leaves the previous PNG whole and no temp file."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from pneumocam import overlays, plots


def _failing_figure() -> Figure:
    """A figure whose savefig writes half a PNG to its target and then fails (a full disk)."""
    fig = Figure()
    fig.subplots().plot([0, 1], [0, 1])

    def savefig(target, *args, **kwargs):
        if hasattr(target, "write"):
            target.write(b"\x89PNG half")
        else:
            with open(target, "wb") as fh:
                fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    fig.savefig = savefig
    return fig


@pytest.mark.parametrize("save", [plots.save_figure, overlays.save_figure])
def test_failed_save_keeps_the_old_png(save, tmp_path):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old png")
    with pytest.raises(OSError):
        save(_failing_figure(), target)
    assert target.read_bytes() == b"old png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


@pytest.mark.parametrize("save", [plots.save_figure, overlays.save_figure])
def test_save_writes_a_png(save, tmp_path):
    fig = overlays.cam_overlay_figure(np.zeros((16, 16), np.uint8), np.ones((16, 16)) / 2)
    path = save(fig, tmp_path / "sub" / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["fig.png"]


def test_data_report_figures_go_through_the_atomic_save(tmp_path, monkeypatch):
    """plots_data writes its PNGs with plots.save_figure and keeps the figures showable."""
    from helpers import make_processed

    from pneumocam import plots_data

    processed = make_processed(tmp_path, n_train=8, n_val=4, n_test=4)
    saved = []
    real = plots.save_figure

    def spy(fig, path, *args, **kwargs):
        saved.append((path, kwargs.get("clear", True)))
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "save_figure", spy)
    monkeypatch.setattr(plots_data, "save_figure", spy, raising=False)
    report = plots_data.data_report(processed, images_out=tmp_path / "img",
                                    metrics_out=tmp_path / "m", n_samples=2)
    assert sorted(p.name for p, _ in saved) == ["counts.png", "samples.png"]
    assert all(clear is False for _, clear in saved)  # kept for the notebook to show
    assert all(fig.axes for fig in report.figures.values())
    assert (tmp_path / "img" / "samples.png").read_bytes()[:4] == b"\x89PNG"
