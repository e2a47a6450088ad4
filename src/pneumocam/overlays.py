"""CAM figures: one overlay per radiograph, confusion-matrix grids, run-vs-run comparisons.

Every function builds a :class:`matplotlib.figure.Figure` without pyplot (no global state, no
GUI backend; safe in worker processes) and :func:`save_figure` writes it as PNG. Inputs:

- ``image``: uint8 (H, W), 0..255, dark lungs (a ``data/Processed`` array or a resized DICOM);
- ``cam_map``: float (H, W) in [0, 1], the normalised class activation map at image resolution;
- ``boxes``: a list of ``[x, y, width, height]`` in the image's pixels (upper-left corner);
- ``low_map``: optional float (h, w), the same map at its own resolution (``CamResult.low``,
  7x7 at 224 px). The peak marked ``+`` is :func:`pneumocam.localization.peak_yx` of it (the
  strongest cell's centre, the pointing game's peak); without it, of ``cam_map`` (the centre of
  the plateau of maxima, which for a border cell of an upsampled map lies s/4 = 8 px outward).

Maps use a perceptual colormap (``inferno``) blended over the radiograph with ``alpha``; figures
made from synthetic demo data carry a visible red "synthetic demo data" note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import plots
from .localization import peak_yx, point_in_boxes

DEMO_NOTE = "synthetic demo data: these maps say nothing about pneumonia"
DEFAULT_CMAP = "inferno"
DEFAULT_ALPHA = 0.45
BOX_COLOR = "#00e5ff"  # cyan: visible on both the gray radiograph and the inferno map
PEAK_COLOR = "#39ff14"

Box = Sequence[float]


def add_demo_note(fig: Figure, text: str = DEMO_NOTE) -> None:
    """:func:`pneumocam.plots.add_demo_note` with the CAM figures' wording."""
    plots.add_demo_note(fig, text)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders created) and return the path.

    Atomic (:func:`pneumocam.plots.save_figure`: a temporary file renamed onto ``path``): an
    existing file of that name is replaced whole, never left half-written. The figure is kept.
    """
    return plots.save_figure(fig, path, dpi=dpi, clear=False, bbox_inches="tight")


def map_peak(cam_map: np.ndarray, low_map: np.ndarray | None = None) -> tuple[float, float]:
    """The peak ``(y, x)`` in ``cam_map``'s pixels (the boxes' frame): :func:`peak_yx` of
    ``low_map`` when given (mapped to ``cam_map``'s size), else of ``cam_map``."""
    if low_map is None:
        return peak_yx(cam_map)
    return peak_yx(low_map, np.shape(cam_map))


def peak_in_boxes(cam_map: np.ndarray, boxes: Sequence[Box],
                  low_map: np.ndarray | None = None) -> bool | None:
    """Whether the map's peak (:func:`map_peak`) lies inside any box; None when there are no
    boxes. The pointing-game rule of :mod:`pneumocam.localization`."""
    if len(boxes) == 0:
        return None
    return point_in_boxes(map_peak(cam_map, low_map), boxes, np.shape(cam_map))


def draw_boxes(ax, boxes: Sequence[Box], color: str = BOX_COLOR, linewidth: float = 1.5) -> None:
    """Outline each ``[x, y, w, h]`` box on ``ax`` (pixel centres at integer coordinates)."""
    for x, y, w, h in boxes:
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=color,
                               linewidth=linewidth))


def draw_overlay(ax, image: np.ndarray, cam_map: np.ndarray | None, boxes: Sequence[Box] = (),
                 alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP, show_peak: bool = True,
                 low_map: np.ndarray | None = None):
    """The radiograph in gray, the map blended on top, the boxes and the map's peak
    (:func:`map_peak`: of ``low_map`` when given).

    Returns:
        The map's ``AxesImage`` (for a colorbar), or None when ``cam_map`` is None.
    """
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    mappable = None
    if cam_map is not None:
        mappable = ax.imshow(cam_map, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0,
                             interpolation="bilinear")
        if show_peak:
            y, x = map_peak(cam_map, low_map)
            # imshow puts pixel c's centre at c, the boxes' frame at c + 0.5 (as draw_boxes)
            ax.plot([x - 0.5], [y - 0.5], marker="+", color=PEAK_COLOR, markersize=10, mew=2)
    draw_boxes(ax, boxes)
    ax.set_axis_off()
    return mappable


def format_probability(value: float) -> str:
    """A probability or threshold in [0, 1] with 4 significant digits: ``0.8312``, ``0.42``,
    ``0.0001234``, ``3.2e-05`` (so a tiny threshold never prints as ``0.000``)."""
    return f"{value:.4g}"


def _yes_no(value: bool | None) -> str:
    return "n/a (no boxes)" if value is None else ("yes" if value else "no")


def overlay_title(label: int | None, prob: float, peak_hit: bool | None,
                  threshold: float | None = None) -> str:
    """``true: pneumonia | p(pneumonia) = 0.8312 | peak in box: yes``.

    ``label`` None (a new file, no ground truth) drops the truth and the pointing result;
    ``threshold`` adds the decision at it.
    """
    parts = [f"p(pneumonia) = {format_probability(prob)}"]
    if label is not None:
        parts.insert(0, f"true: {'pneumonia' if int(label) == 1 else 'no pneumonia'}")
    if threshold is not None:
        decision = "positive" if prob >= threshold else "negative"
        parts.append(f"{decision} at {format_probability(threshold)}")
    if label is not None:
        parts.append(f"peak in box: {_yes_no(peak_hit)}")
    return " | ".join(parts)


def cam_overlay_figure(image: np.ndarray, cam_map: np.ndarray, boxes: Sequence[Box] = (), *,
                       title: str = "", suptitle: str = "", demo: bool = False,
                       alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP,
                       low_map: np.ndarray | None = None) -> Figure:
    """Two panels: the radiograph with its boxes, and the map overlaid with a colorbar.

    Args:
        image: uint8 (H, W).
        cam_map: float (H, W) in [0, 1].
        low_map: float (h, w), the map at its own resolution, where the peak is taken.
        boxes: ground-truth ``[x, y, w, h]`` boxes in image pixels (drawn on both panels).
        title: line under the panels' heading (label, probability, pointing result).
        suptitle: figure heading (patient id, run, method).
        demo: stamp the synthetic-data note.
    """
    fig = Figure(figsize=(8.6, 4.3))
    ax_img, ax_map = fig.subplots(1, 2)
    draw_overlay(ax_img, image, None, boxes)
    ax_img.set_title("radiograph + radiologist boxes" if len(boxes) else "radiograph", fontsize=9)
    mappable = draw_overlay(ax_map, image, cam_map, boxes, alpha=alpha, cmap=cmap, low_map=low_map)
    ax_map.set_title("class activation map (+ = peak)", fontsize=9)
    cbar = fig.colorbar(mappable, ax=ax_map, fraction=0.046, pad=0.03)
    cbar.set_label("normalised activation", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{suptitle}\n{title}" if suptitle else title, fontsize=9)
    if demo:
        add_demo_note(fig)
    return fig


def cam_grid_figure(images: np.ndarray, maps: np.ndarray, boxes_list: Sequence[Sequence[Box]],
                    captions: Sequence[str], title: str, *, demo: bool = False, ncols: int = 4,
                    alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP,
                    low_maps: np.ndarray | None = None) -> Figure:
    """A grid of overlays (one per image) with a caption each; an empty grid says so.

    Args:
        images: uint8 (K, H, W); K may be 0.
        maps: float (K, H, W) in [0, 1].
        low_maps: float (K, h, w), the maps at their own resolution, where the peaks are taken.
        boxes_list: K lists of boxes.
        captions: K short captions (e.g. patient id and probability).
        title: the grid's heading.
    """
    k = len(images)
    ncols = max(1, min(ncols, k)) if k else 1
    nrows = max(1, math.ceil(k / ncols))
    fig = Figure(figsize=(2.4 * ncols + 0.8, 2.6 * nrows + 0.7))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    mappable = None
    for i, ax in enumerate(axes):
        if i < k:
            mappable = draw_overlay(ax, images[i], maps[i], boxes_list[i], alpha=alpha, cmap=cmap,
                                    low_map=None if low_maps is None else low_maps[i])
            ax.set_title(captions[i], fontsize=7)
        else:
            ax.set_axis_off()
    if k == 0:
        axes[0].text(0.5, 0.5, "no examples in this cell", ha="center", va="center",
                     transform=axes[0].transAxes, fontsize=11)
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), fraction=0.02, pad=0.02).ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    if demo:
        add_demo_note(fig)
    return fig


def compare_maps_figure(images: np.ndarray, maps_by_run: Mapping[str, np.ndarray],
                        probs_by_run: Mapping[str, np.ndarray], boxes_list: Sequence[Sequence[Box]],
                        row_labels: Sequence[str], *, title: str = "", demo: bool = False,
                        alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP,
                        low_by_run: Mapping[str, np.ndarray] | None = None) -> Figure:
    """Rows = images, columns = the radiograph then each run's map on the same image.

    Args:
        images: uint8 (K, H, W), K >= 1.
        maps_by_run: ``{run: float (K, H, W) in [0, 1]}``.
        probs_by_run: ``{run: float (K,)}`` shown in each panel's caption.
        boxes_list: K lists of ground-truth boxes.
        row_labels: K labels (patient ids).
        low_by_run: ``{run: float (K, h, w)}`` the maps at their own resolution, where the
            peaks are taken (``SplitMaps.low``).
    """
    runs = list(maps_by_run)
    k = len(images)
    ncols = 1 + len(runs)
    fig = Figure(figsize=(2.5 * ncols + 0.8, 2.5 * max(k, 1) + 0.6))
    axes = fig.subplots(max(k, 1), ncols, squeeze=False)
    mappable = None
    for i in range(k):
        draw_overlay(axes[i, 0], images[i], None, boxes_list[i])
        axes[i, 0].set_title(row_labels[i], fontsize=7)
        for j, run in enumerate(runs, start=1):
            cam_map = maps_by_run[run][i]
            low_map = None if low_by_run is None else low_by_run[run][i]
            mappable = draw_overlay(axes[i, j], images[i], cam_map, boxes_list[i], alpha=alpha,
                                    cmap=cmap, low_map=low_map)
            hit = _yes_no(peak_in_boxes(cam_map, boxes_list[i], low_map))
            axes[i, j].set_title(f"{run}: p={float(probs_by_run[run][i]):.2f}, peak in box {hit}",
                                 fontsize=7)
    if k == 0:
        for ax in axes.ravel():
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no images to compare", ha="center", va="center",
                        transform=axes[0, 0].transAxes)
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes.ravel()), fraction=0.02, pad=0.02)
    fig.suptitle(title, fontsize=10)
    if demo:
        add_demo_note(fig)
    return fig


def localization_bar_chart(rows: Sequence[Mapping], metrics: Sequence[str],
                           *, title: str = "", demo: bool = False) -> Figure:
    """Grouped bars with 95% bootstrap intervals: one group per metric, one bar per entry.

    Args:
        rows: entries (runs and baselines), each ``{"name": str, "<metric>": value,
            "<metric>_lo": lower, "<metric>_hi": upper}`` (nan values are drawn as missing).
        metrics: the metric keys to plot, e.g. ``("pointing_game", "mass_in_boxes", "iou")``.
    """
    fig = Figure(figsize=(min(14.0, max(6.0, 0.55 * len(rows) * len(metrics) + 2.0)), 4.4))
    ax = fig.subplots()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(metrics), dtype=float)
    for i, row in enumerate(rows):
        values = np.array([float(row.get(m, np.nan)) for m in metrics])
        lo = np.array([float(row.get(f"{m}_lo", np.nan)) for m in metrics])
        hi = np.array([float(row.get(f"{m}_hi", np.nan)) for m in metrics])
        err = np.vstack([np.clip(values - lo, 0, None), np.clip(hi - values, 0, None)])
        err = np.nan_to_num(err, nan=0.0)
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, np.nan_to_num(values, nan=0.0), width,
               yerr=err, capsize=3, label=str(row["name"]), color=f"C{i % 10}",
               hatch="//" if row.get("baseline") else None, edgecolor="black", linewidth=0.5)
    ax.set_xticks(x)
    ax.set_xticklabels([m.replace("_", " ") for m in metrics])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% bootstrap CI)")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    if demo:
        add_demo_note(fig)
    return fig
