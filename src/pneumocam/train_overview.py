"""What the two training notebooks show around :func:`pneumocam.train.train`.

The notebooks ``02-Train-Original`` and ``02-Train-Balanced`` are parallel (only the sampler
differs), so what they show lives here once and their cells are calls:

- :func:`describe_processed`: the processed data a run reads (its source, said loudly when it is
  the synthetic demo, and the class counts per split);
- :func:`sampler_batches`: the negatives and positives of the first batches each sampler draws
  with a finished run's labels, seed and batch size, as a table and as
  ``images/<run>/sampler_batches.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import class_counts, sampler_preview
from .paths import run_images_dir
from .plots import plot_sampler_batches, save_figure
from .processed import DataSource, read_manifest, read_stats
from .train import limited_rows

DEMO_WARNING = ("SYNTHETIC DEMO DATA: the numbers below show that the pipeline works, not how "
                "well a model detects pneumonia on real radiographs.")
SAMPLER_FIGURE = "sampler_batches.png"


@dataclass(frozen=True)
class ProcessedOverview:
    """A processed folder as a training notebook introduces it.

    Attributes:
        processed: the folder.
        source: ``stats.json``'s ``source`` block, typed.
        counts: images per class (rows ``negative``, ``positive``) and split (columns ``train``,
            ``val``, ``test``), ints from ``stats.json``'s ``counts``.
    """

    processed: Path
    source: DataSource
    counts: pd.DataFrame

    @property
    def demo(self) -> bool:
        """The synthetic demo dataset: figures get the demo stamp."""
        return self.source.is_demo


def describe_processed(processed: str | Path) -> ProcessedOverview:
    """Read ``processed``'s ``stats.json``, print where its images came from (and
    :data:`DEMO_WARNING` for the demo data) and return the overview.

    Raises:
        ProcessedDataError: no readable ``stats.json`` (:func:`pneumocam.processed.read_stats`).
    """
    processed = Path(processed)
    stats = read_stats(processed)
    source = DataSource.from_json(stats.get("source"))
    print(f"processed data: {processed} (source: {source.kind}, {source.path})")
    if source.is_demo:
        print(DEMO_WARNING)
    counts = pd.DataFrame(stats["counts"]).rename(index={"0": "negative", "1": "positive"})
    return ProcessedOverview(processed=processed, source=source, counts=counts)


def training_labels(processed: str | Path, limit: int | None) -> np.ndarray:
    """The 0/1 training labels (int64, (N,)) in the order training holds them, after the same
    class-stratified ``limit`` (None: the whole split)."""
    manifest = read_manifest(processed)
    rows = manifest[manifest["split"] == "train"]
    return limited_rows(rows, limit)["label"].to_numpy(np.int64)


@dataclass(frozen=True)
class SamplerBatches:
    """The first batches of epoch 1 under each sampler, for one run.

    Attributes:
        draws: :func:`pneumocam.data.sampler_preview` output (index ``batch``; int columns
            ``"<sampler> negative"``, ``"<sampler> positive"``).
        figure: the saved chart, ``images/<run>/sampler_batches.png``.
    """

    draws: pd.DataFrame
    figure: Path


def sampler_batches(processed: str | Path, settings: Mapping[str, Any], demo: bool,
                    n_batches: int = 4) -> SamplerBatches:
    """Count what each sampler puts in a run's first ``n_batches`` batches, say so, and save
    the chart as ``images/<run>/sampler_batches.png``.

    Args:
        processed: the folder the run trained on.
        settings: the run's resolved settings (``TrainResult.settings``, ``config.json``'s
            ``settings``): ``run_name``, ``sampler``, ``limit``, ``seed``,
            ``effective_batch_size`` are read.
        demo: stamp the chart as synthetic demo data.
        n_batches: batches counted, >= 1.
    """
    labels = training_labels(processed, settings["limit"])
    n_neg, n_pos = class_counts(labels)
    batch, seed = settings["effective_batch_size"], settings["seed"]
    share = n_pos / (n_neg + n_pos)
    print(f"training labels: {n_neg} negative, {n_pos} positive ({share:.1%} positive); "
          f"batch size {batch}, seed {seed}; this run drew with {settings['sampler']!r}")
    draws = sampler_preview(labels, batch, seed=seed, n_batches=n_batches)
    fig = plot_sampler_batches(draws, batch, share, demo=demo)
    path = save_figure(fig, run_images_dir(settings["run_name"]) / SAMPLER_FIGURE)
    return SamplerBatches(draws=draws, figure=path)
