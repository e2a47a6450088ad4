"""Figures and tables of the processed data: sample images with their boxes, split/class counts,
and the view-position table (AP/PA share and positive rate, the shortcut every model must beat).

Figures are built with :func:`pneumocam.plots.new_figure` (Agg, no pyplot state) and carry the
visible "synthetic demo data" note whenever the processed data was not made from RSNA files
alone (``stats.json`` source kind ``demo`` or ``other``). :func:`data_report` makes and saves
everything: PNGs under ``images/preprocess/``, CSVs under ``metrics/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import paths
from .atomic import write_frame_csv
from .plots import DPI, new_figure, save_figure
from .processed import SKIPPED_NAME, SPLITS, DataSource, read_manifest, read_stats

FIGURES_SUBDIR = "preprocess"


def is_demo_source(stats: dict[str, Any]) -> bool:
    """True unless the processed data came from non-synthetic (RSNA) files only."""
    return DataSource.from_json(stats.get("source")).maybe_synthetic


def split_count_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per split: negatives, positives, positive rate, and one column per RSNA class.

    Returns:
        DataFrame indexed by split (``train``, ``val``, ``test``, ``total``) with int columns
        ``images``, ``negative``, ``positive``, the class names (when known), and float
        ``positive_rate`` in [0, 1] (NaN for an empty split).
    """
    rows = []
    classes = sorted(c for c in manifest["class"].unique() if c) if "class" in manifest else []
    for split in (*SPLITS, "total"):
        part = manifest if split == "total" else manifest[manifest["split"] == split]
        n = len(part)
        pos = int((part["label"] == 1).sum())
        row = {"split": split, "images": n, "negative": n - pos, "positive": pos,
               "positive_rate": pos / n if n else float("nan")}
        for c in classes:
            row[c] = int((part["class"] == c).sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


def view_position_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per view position: images, share of all images, positives and positive rate.

    On the real stage 2 data: AP 45.6% of images with 38.3% positive, PA 54.4% with 9.3%.

    Returns:
        DataFrame indexed by view (``AP``, ``PA``, others, ``unknown`` for empty, ``all``) with
        ``images`` (int), ``share`` (float in [0, 1]), ``positive`` (int), ``positive_rate``.
    """
    views = manifest["view_position"].fillna("").replace("", "unknown")
    n_all = len(manifest)
    rows = []
    for view in [*sorted(views.unique()), "all"]:
        mask = np.ones(n_all, bool) if view == "all" else (views == view).to_numpy()
        n = int(mask.sum())
        pos = int(manifest.loc[mask, "label"].sum())
        rows.append({"view_position": view, "images": n, "share": n / n_all if n_all else 0.0,
                     "positive": pos, "positive_rate": pos / n if n else float("nan")})
    return pd.DataFrame(rows).set_index("view_position")


def choose_samples(manifest: pd.DataFrame, n: int = 8, seed: int = 0) -> pd.DataFrame:
    """``n`` manifest rows for display: half positives (with boxes), half negatives, seeded."""
    rng = np.random.default_rng(seed)
    pos = manifest[manifest["label"] == 1]
    neg = manifest[manifest["label"] == 0]
    n_pos = min(len(pos), (n + 1) // 2)
    n_neg = min(len(neg), n - n_pos)
    n_pos = min(len(pos), n - n_neg)
    picked = [pos.iloc[rng.permutation(len(pos))[:n_pos]], neg.iloc[rng.permutation(len(neg))[:n_neg]]]
    return pd.concat(picked).reset_index(drop=True)


def plot_samples(processed: str | Path, samples: pd.DataFrame, demo: bool,
                 columns: int = 4) -> Figure:
    """Grid of processed images (uint8, dark lungs) with their boxes in output pixels.

    Args:
        processed: the processed folder (arrays are read from ``array_file``).
        samples: manifest rows, e.g. from :func:`choose_samples` (``boxes`` parsed lists).
        demo: stamp the "synthetic demo data" note.
    """
    n = max(len(samples), 1)
    cols = min(columns, n)
    rows = int(np.ceil(n / cols))
    fig = new_figure((2.6 * cols, 2.9 * rows), demo=demo)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, rec in zip(axes.ravel(), samples.itertuples(index=False), strict=False):
        image = np.load(Path(processed) / rec.array_file, allow_pickle=False)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        for x, y, w, h in rec.boxes:
            # Boxes are in pixel-edge coordinates; imshow puts pixel centres on integers.
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", lw=1.2))
        view = rec.view_position or "?"
        ax.set_title(f"{rec.patientId[:8]}  {view}  {rec.split}\nlabel {rec.label}"
                     f"{'  ' + str(len(rec.boxes)) + ' box(es)' if rec.boxes else ''}", fontsize=8)
    fig.suptitle("Processed images (red: radiologist boxes, output pixels)", fontsize=10)
    return fig


def plot_counts(split_counts: pd.DataFrame, view_table: pd.DataFrame, demo: bool) -> Figure:
    """Stacked bars of negatives/positives per split and per view position, rates annotated."""
    fig = new_figure((9.0, 3.6), demo=demo)
    ax_split, ax_view = fig.subplots(1, 2)
    for ax, table, title in ((ax_split, split_counts.drop(index="total"), "per split"),
                             (ax_view, view_table.drop(index="all"), "per view position")):
        names = list(table.index)
        pos = table["positive"].to_numpy()
        neg = (table["images"] - table["positive"]).to_numpy()
        ax.bar(names, neg, color="tab:blue", label="negative (0)")
        ax.bar(names, pos, bottom=neg, color="tab:red", label="positive (1)")
        for i, (total, rate) in enumerate(zip(table["images"], table["positive_rate"], strict=True)):
            if total:
                ax.annotate(f"{rate:.0%} pos", (i, total), ha="center", va="bottom", fontsize=8)
        ax.set_title(f"Images {title}", fontsize=10)
        ax.set_ylabel("images")
        ax.margins(y=0.15)
    ax_split.legend(fontsize=8)
    return fig


def read_skipped(processed: str | Path) -> pd.DataFrame:
    """``skipped.csv`` as a DataFrame (``file``, ``reason``); empty when the file is absent."""
    path = Path(processed) / SKIPPED_NAME
    if not path.is_file():
        return pd.DataFrame(columns=["file", "reason"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@dataclass
class DataReport:
    """What :func:`data_report` made.

    Attributes:
        stats: ``stats.json`` of the processed folder.
        split_counts: :func:`split_count_table`.
        view_positions: :func:`view_position_table`.
        skipped: ``skipped.csv`` (``file``, ``reason``): every file that was set aside.
        figures: ``{"samples": Figure, "counts": Figure}``.
        saved: ``{name: path}`` of every PNG and CSV written.
    """

    stats: dict[str, Any]
    split_counts: pd.DataFrame
    view_positions: pd.DataFrame
    skipped: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)
    saved: dict[str, Path] = field(default_factory=dict)

    @property
    def demo(self) -> bool:
        return is_demo_source(self.stats)


def data_report(processed: str | Path | None = None, images_out: str | Path | None = None,
                metrics_out: str | Path | None = None, n_samples: int = 8,
                seed: int = 0) -> DataReport:
    """Tables and figures of a processed folder, saved as PNG/CSV.

    Args:
        processed: processed folder (default ``paths.processed_dir()``).
        images_out: folder for ``samples.png`` and ``counts.png``
            (default ``images/preprocess/``).
        metrics_out: folder for ``preprocess_split_counts.csv`` and
            ``preprocess_view_positions.csv`` (default ``metrics/``).
        n_samples: images in the sample grid.
        seed: which images are sampled.

    Raises:
        ProcessedDataError: missing or unreadable manifest/stats.
    """
    processed = Path(processed or paths.processed_dir())
    images_out = Path(images_out or paths.images_dir() / FIGURES_SUBDIR)
    metrics_out = Path(metrics_out or paths.metrics_dir())
    stats = read_stats(processed)
    manifest = read_manifest(processed)
    demo = is_demo_source(stats)
    report = DataReport(stats=stats, split_counts=split_count_table(manifest),
                        view_positions=view_position_table(manifest),
                        skipped=read_skipped(processed))
    report.figures["samples"] = plot_samples(processed, choose_samples(manifest, n_samples, seed),
                                             demo=demo)
    report.figures["counts"] = plot_counts(report.split_counts, report.view_positions, demo=demo)
    images_out.mkdir(parents=True, exist_ok=True)
    metrics_out.mkdir(parents=True, exist_ok=True)
    for name, fig in report.figures.items():
        path = images_out / f"{name}.png"
        save_figure(fig, path, dpi=DPI, clear=False)  # kept open so a notebook can still show it
        report.saved[f"{name}.png"] = path
    for name, table in (("split_counts", report.split_counts),
                        ("view_positions", report.view_positions)):
        path = metrics_out / f"preprocess_{name}.csv"
        write_frame_csv(path, table, float_format="%.4f")
        report.saved[path.name] = path
    return report
