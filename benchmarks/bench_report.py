"""Gallery thumbnails per second: the report's batched OpenCV path against one matplotlib figure
per image, same images, same maps, same run, on one core.

Both sides make the same picture (radiograph in gray, the map through inferno blended with
alpha 0.45, the boxes, the peak's ``+``, at the gallery's thumbnail size) and write it as a
JPEG file:

1. ``pneumocam.thumbnails``: :func:`map_levels`, :func:`feature_peaks` and
   :func:`render_overlays` on a chunk of images at once, then ``cv2.imencode`` per image (what
   ``scripts/report.py`` runs for every image of a split);
2. baseline: :func:`pneumocam.overlays.draw_overlay` on one small matplotlib figure per image,
   ``savefig`` to JPEG (what making the gallery from the existing overlay code would cost).

Both run with one thread (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``). The images
are synthetic radiograph-like arrays (smooth, with ribs of noise) and the maps bilinear
upsamplings of random 7x7 maps, as the CAMs are; ``--data-dir`` uses a processed folder's test
split instead. It also reports the average thumbnail size and the projection for the real test
split (2,668 images) for two runs.

    python benchmarks/bench_report.py                     # 512 images, 48 for the baseline
    python benchmarks/bench_report.py --n 2668 --data-dir data/Processed

Measured on this project's 2-core CPU (Intel Xeon with AVX-512 under KVM, lscpu: "Intel(R)
Xeon(R) Processor"), November 2026, defaults: see the README's Performance table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pneumocam.cam import upsample_maps
from pneumocam.overlays import draw_overlay
from pneumocam.report_gallery import CHUNK, FULL_MIN_SIZE, FULL_QUALITY, THUMB_QUALITY, THUMB_SIZE
from pneumocam.thumbnails import (
    encode_jpeg,
    feature_peaks,
    map_levels,
    normalize_maps,
    render_overlays,
)

REAL_TEST_SPLIT = 2668  # images in the real RSNA test split (10% of 26,684 patients)
TARGET_RATIO, TARGET_RATE = 10.0, 150.0


def synthetic(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """uint8 (n, size, size) radiograph-like images, float32 raw maps, one box on half."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    lungs = 140 - 90 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03)
                        + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03))
    ribs = 12 * np.sin(yy * 40)
    images = np.empty((n, size, size), np.uint8)
    for i in range(n):
        noise = cv2.GaussianBlur(rng.normal(0, 18, (size, size)), (0, 0), 1.5)
        images[i] = np.clip(lungs + ribs + noise, 0, 255)
    low = torch.from_numpy(rng.normal(0, 1, (n, 7, 7)).astype(np.float32))
    raw = upsample_maps(low, (size, size)).numpy()
    boxes = [[[size * 0.2, size * 0.3, size * 0.2, size * 0.3]] if i % 2 else [] for i in range(n)]
    return images, raw, boxes


def from_processed(folder: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """The first ``n`` test arrays of a processed folder and their boxes; random 7x7 maps."""
    import pandas as pd

    from pneumocam.report_gallery import parse_boxes

    m = pd.read_csv(folder / "manifest.csv", dtype={"patientId": str})
    m = m[m["split"] == "test"].head(n)
    images = np.stack([np.load(folder / f) for f in m["array_file"]])
    _, raw, _ = synthetic(len(m), images.shape[1], seed)
    return images, raw, [parse_boxes(b) for b in m["boxes"]]


def batch_path(images: np.ndarray, raw: np.ndarray, boxes: list, out: Path) -> list[int]:
    """The report's path; returns each JPEG's size in bytes."""
    sizes = []
    for start in range(0, len(images), CHUNK):
        sl = slice(start, start + CHUNK)
        thumbs = render_overlays(images[sl], map_levels(raw[sl]), boxes[sl],
                                 feature_peaks(raw[sl]), THUMB_SIZE)
        for j, thumb in enumerate(thumbs):
            data = encode_jpeg(thumb, THUMB_QUALITY)
            (out / f"t{start + j}.jpg").write_bytes(data)
            sizes.append(len(data))
    return sizes


def gallery_path(images: np.ndarray, raw: np.ndarray, boxes: list, out: Path) -> list[int]:
    """Every picture the gallery writes per image and run: the thumbnail, the full-size overlay
    and (once per patient, counted here for every image) the plain radiograph."""
    sizes = []
    side = max(FULL_MIN_SIZE, images.shape[1])
    for start in range(0, len(images), CHUNK):
        sl = slice(start, start + CHUNK)
        levels, peaks = map_levels(raw[sl]), feature_peaks(raw[sl])
        thumbs = render_overlays(images[sl], levels, boxes[sl], peaks, THUMB_SIZE)
        fulls = render_overlays(images[sl], levels, boxes[sl], peaks, side)
        plain = render_overlays(images[sl], None, [[]] * len(thumbs), None, side)
        for j in range(len(thumbs)):
            for name, pic, q in (("t", thumbs[j], THUMB_QUALITY), ("f", fulls[j], FULL_QUALITY),
                                 ("x", plain[j], FULL_QUALITY)):
                data = encode_jpeg(pic, q)
                (out / f"{name}{start + j}.jpg").write_bytes(data)
                sizes.append(len(data))
    return sizes


def matplotlib_path(images: np.ndarray, raw: np.ndarray, boxes: list, out: Path) -> None:
    """One figure per image, the project's matplotlib overlay, saved as JPEG at the same size."""
    maps = normalize_maps(raw)
    for i in range(len(images)):
        fig = Figure(figsize=(THUMB_SIZE / 100, THUMB_SIZE / 100), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        draw_overlay(ax, images[i], maps[i], boxes[i])
        fig.savefig(out / f"m{i}.jpg", dpi=100, pil_kwargs={"quality": THUMB_QUALITY})


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512, help="images for the batched path")
    p.add_argument("--n-baseline", type=int, default=48, help="images for the matplotlib baseline")
    p.add_argument("--size", type=int, default=224, help="synthetic image side in pixels")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="use this processed folder's test arrays instead of synthetic ones")
    p.add_argument("--repeat", type=int, default=3, help="timed passes, the best kept")
    p.add_argument("--seed", type=int, default=0, help="seed of the images and maps")
    args = p.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.data_dir is not None:
        images, raw, boxes = from_processed(args.data_dir, args.n, args.seed)
    else:
        images, raw, boxes = synthetic(args.n, args.size, args.seed)
    nb = min(args.n_baseline, len(images))
    tmp = Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        batch_paths, mpl, gallery = [], [], []
        for _ in range(max(1, args.repeat)):
            t, sizes = timed(batch_path, images, raw, boxes, tmp)
            batch_paths.append(t)
            t, all_sizes = timed(gallery_path, images, raw, boxes, tmp)
            gallery.append(t)
            t, _ = timed(matplotlib_path, images[:nb], raw[:nb], boxes[:nb], tmp)
            mpl.append(t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = len(images) / min(batch_paths)
    base = nb / min(mpl)
    ratio = rate / base
    avg_kb = float(np.mean(sizes)) / 1000
    n_real = 2 * REAL_TEST_SPLIT
    print(f"images: {len(images)} of {images.shape[1]}x{images.shape[2]} "
          f"({'from ' + str(args.data_dir) if args.data_dir else 'synthetic'}), thumbnails "
          f"{THUMB_SIZE}x{THUMB_SIZE} JPEG q{THUMB_QUALITY}; 1 thread; best of {args.repeat}")
    print(f"batched OpenCV (pneumocam.thumbnails): {rate:8.1f} thumbnails/s on one core "
          f"(target {TARGET_RATE:.0f}: {'met' if rate >= TARGET_RATE else 'NOT met'})")
    print(f"matplotlib, one figure per image:      {base:8.1f} thumbnails/s ({nb} images)")
    print(f"ratio batched / matplotlib: {ratio:.1f}x (target {TARGET_RATIO:.0f}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    print(f"average thumbnail: {avg_kb:.1f} KB (target <= 15 KB); the real test split for two "
          f"runs ({n_real:,} thumbnails): {n_real * avg_kb / 1000:.1f} MB, "
          f"{n_real / rate:.1f} s on one core")
    g_rate = len(images) / min(gallery)
    print(f"every gallery picture of an image (thumbnail + overlay + radiograph): {g_rate:.1f} "
          f"images/s on one core, {float(np.sum(all_sizes)) / len(images) / 1000:.1f} KB per image; "
          f"the real split for two runs: {n_real / g_rate:.1f} s, "
          f"{n_real * float(np.sum(all_sizes)) / len(images) / 1e6:.0f} MB")
    print(f"cpu: {os.cpu_count()} logical CPUs; torch {torch.__version__}, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
