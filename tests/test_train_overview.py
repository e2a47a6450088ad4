"""What the training notebooks show around training: the processed data and the sampler batches."""

from __future__ import annotations

import pytest
from helpers import make_processed
from PIL import Image

from pneumocam.data import sampler_preview
from pneumocam.plots import has_demo_note, plot_sampler_batches
from pneumocam.processed import read_manifest
from pneumocam.train import limited_rows
from pneumocam.train_overview import (
    DEMO_WARNING,
    describe_processed,
    sampler_batches,
    training_labels,
)


@pytest.mark.parametrize("kind", ["demo", "rsna"])
def test_describe_processed_names_the_source_and_warns_only_on_the_demo(tmp_path, capsys, kind):
    processed = make_processed(tmp_path, kind=kind)
    overview = describe_processed(processed)
    out = capsys.readouterr().out
    assert f"processed data: {processed} (source: {kind}, " in out
    assert (DEMO_WARNING in out) == (kind == "demo") and overview.demo == (kind == "demo")
    assert overview.counts.index.tolist() == ["negative", "positive"]
    assert overview.counts.loc["positive", "train"] == 12  # a quarter of the 48 training images
    assert overview.counts.loc["negative", "test"] == 12


def test_training_labels_follow_the_limit(tmp_path):
    processed = make_processed(tmp_path)
    assert len(training_labels(processed, None)) == 48
    limited = training_labels(processed, 10)
    assert len(limited) == 10 and 0 < limited.sum() < 10  # both classes kept
    rows = read_manifest(processed).query("split == 'train'")
    assert limited.tolist() == limited_rows(rows, 10)["label"].tolist()


def test_sampler_batches_counts_the_run_draws_and_saves_the_chart(tiny_root, capsys):
    processed = tiny_root / "data" / "Processed"
    settings = {"run_name": "balanced", "sampler": "balanced", "limit": 32, "seed": 3,
                "effective_batch_size": 8}
    shown = sampler_batches(processed, settings, demo=True, n_batches=3)
    out = capsys.readouterr().out
    assert "this run drew with 'balanced'" in out and "batch size 8, seed 3" in out
    labels = training_labels(processed, 32)
    assert shown.draws.equals(sampler_preview(labels, 8, seed=3, n_batches=3))
    assert shown.figure == tiny_root / "images" / "balanced" / "sampler_batches.png"
    with Image.open(shown.figure) as png:
        assert png.format == "PNG" and png.width > 100


def test_plot_sampler_batches_draws_both_samplers_and_both_lines():
    draws = sampler_preview([0] * 30 + [1] * 10, 8, seed=0, n_batches=4)
    fig = plot_sampler_batches(draws, 8, 0.25, demo=True)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(draws)  # one bar per batch and sampler
    assert sorted(line.get_ydata()[0] for line in ax.get_lines()) == [2.0, 4.0]
    assert has_demo_note(fig)
    assert not has_demo_note(plot_sampler_batches(draws, 8, 0.25, demo=False))
