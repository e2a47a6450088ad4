"""CAM thumbnails in batch: colormap, alpha blend, boxes, peak mark, resize, JPEG, with OpenCV.

The gallery of the HTML report (:mod:`pneumocam.report_site`) shows every image of a split,
thousands per run, so its pictures are drawn here with array operations instead of one
matplotlib figure per image (:mod:`pneumocam.overlays`, kept for the figures people print).
They look the same: the radiograph in gray, the normalised map through ``inferno`` blended on top
with :data:`pneumocam.overlays.DEFAULT_ALPHA`, the boxes in :data:`~pneumocam.overlays.BOX_COLOR`,
the pointing game's peak as a ``+`` in :data:`~pneumocam.overlays.PEAK_COLOR`.

Inputs everywhere:

- ``images``: uint8 (N, H, W), 0..255 (``data/Processed`` arrays);
- ``maps``: float32 (N, H, W) in [0, 1] (:func:`normalize_maps` of the saved raw maps);
- ``boxes``: N lists of ``[x, y, w, h]`` in the images' pixels (upper-left corner);
- ``peaks``: float (N, 2) ``(y, x)`` in the images' pixels (pixel ``c`` covers ``[c, c + 1)``),
  NaN for none.

Outputs are uint8 (N, S, S, 3) BGR (OpenCV's order) at the requested side ``S``, and
:func:`encode_jpeg` makes the files.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .overlays import BOX_COLOR, DEFAULT_ALPHA, PEAK_COLOR

Box = Sequence[float]
_SHIFT = 4  # cv2 drawing with 4 fractional bits: boxes land within 1/16 px of their place


def _bgr(hex_color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> OpenCV's (b, g, r)."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def normalize_maps(raw: np.ndarray, method: str = "cam") -> np.ndarray:
    """Per-image min-max of saved raw maps, as :func:`pneumocam.cam.compute_cams` normalises.

    Args:
        raw: float (N, H, W), ``metrics/<run>_maps.npy`` (signed maps at input size).
        method: ``"cam"`` scales the signed map; the library methods' maps are ReLU'd first
            (here after upsampling, which for a bilinear upsampling differs from the ReLU at
            feature resolution only along sign changes).

    Returns:
        float32 (N, H, W) in [0, 1]; a constant map gives zeros.
    """
    maps = np.asarray(raw, dtype=np.float32)
    if method != "cam":
        maps = np.maximum(maps, 0)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


def feature_peaks(raw: np.ndarray, stride: int = 32) -> np.ndarray:
    """The peak ``(y, x)`` of each map, taken at the centres of its feature cells.

    The saved maps are bilinear upsamplings of a map of ``H / stride`` cells (ResNet-18's
    ``layer4``: 7x7 at 224 px); the pointing game takes the strongest cell's centre
    (:func:`pneumocam.localization.peak_yx`). Sampling each upsampled map at the pixel nearest
    every cell centre recovers that cell (up to a 1/64 interpolation weight of its
    neighbours). A map whose side is not a multiple of ``stride`` uses every pixel.

    Args:
        raw: float (N, H, W).

    Returns:
        float64 (N, 2): ``(y, x)`` in pixels, the centre of the strongest cell.
    """
    raw = np.asarray(raw)
    n, h, w = raw.shape
    if n == 0:
        return np.empty((0, 2))
    if h % stride or w % stride or h < stride or w < stride:
        stride = 1
    rows = np.arange(h // stride) * stride + stride // 2
    cols = np.arange(w // stride) * stride + stride // 2
    cells = raw[:, rows][:, :, cols]  # (N, h/stride, w/stride)
    flat = cells.reshape(n, -1).argmax(axis=1)
    r, c = np.divmod(flat, cells.shape[2])
    return np.stack([(r + 0.5) * stride, (c + 0.5) * stride], axis=1).astype(np.float64)


def _resize_batch(arr: np.ndarray, size: int, interpolation: int | None = None) -> np.ndarray:
    """(N, H, W[, C]) -> (N, size, size[, C]): area averaging down, bilinear up."""
    n, h = arr.shape[0], arr.shape[1]
    if h == size and arr.shape[2] == size:
        return arr
    if interpolation is None:
        interpolation = cv2.INTER_AREA if size < h else cv2.INTER_LINEAR
    out = np.empty((n, size, size, *arr.shape[3:]), arr.dtype)
    for i in range(n):
        out[i] = cv2.resize(arr[i], (size, size), interpolation=interpolation)
    return out


def _draw_marks(canvas: np.ndarray, boxes: Sequence[Box], peak: np.ndarray | None,
                scale: tuple[float, float]) -> None:
    """Boxes and the ``+`` peak on one BGR canvas (in place); ``scale``: (sy, sx) image->canvas."""
    sy, sx = scale
    one = 1 << _SHIFT
    thick = max(1, round(canvas.shape[0] / 128))
    for x, y, w, h in boxes:
        p0 = (round(x * sx * one), round(y * sy * one))
        p1 = (round(((x + w) * sx - 1) * one), round(((y + h) * sy - 1) * one))
        cv2.rectangle(canvas, p0, p1, _bgr(BOX_COLOR), thick, cv2.LINE_AA, _SHIFT)
    if peak is not None and np.isfinite(peak).all():
        py, px = peak[0] * sy - 0.5, peak[1] * sx - 0.5
        arm = max(3.0, canvas.shape[0] / 24)
        for (ax, ay), (bx, by) in (((px - arm, py), (px + arm, py)), ((px, py - arm), (px, py + arm))):
            cv2.line(canvas, (round(ax * one), round(ay * one)), (round(bx * one), round(by * one)),
                     _bgr(PEAK_COLOR), thick + 1, cv2.LINE_AA, _SHIFT)


def map_levels(raw: np.ndarray, method: str = "cam") -> np.ndarray:
    """:func:`normalize_maps` quantised to 0..255 in one pass per image (the thumbnails' input).

    Args:
        raw: float (N, H, W) saved maps. method: as for :func:`normalize_maps`.

    Returns:
        uint8 (N, H, W): ``round(255 * (map - min) / (max - min))``; a constant map gives 0.
    """
    raw = np.asarray(raw, dtype=np.float32)
    out = np.empty(raw.shape, np.uint8)
    for i, one in enumerate(raw):
        if method != "cam":
            one = cv2.threshold(one, 0, 0, cv2.THRESH_TOZERO)[1]  # ReLU, vectorised by OpenCV
        lo, hi = float(one.min()), float(one.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        # |scale * x - scale * lo| with x >= lo is the scaled map itself: saturated, rounded
        out[i] = cv2.convertScaleAbs(one, alpha=scale, beta=-lo * scale)
    return out


def render_overlays(images: np.ndarray, maps: np.ndarray | None, boxes: Sequence[Sequence[Box]],
                    peaks: np.ndarray | None, size: int,
                    alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Radiographs with the map blended on top, the boxes and the peak, at ``size`` px.

    Args:
        images: uint8 (N, H, W). maps: float (N, H, W) in [0, 1] or uint8 levels 0..255
            (:func:`map_levels`), or None for the radiographs alone (boxes still drawn).
        boxes: N box lists in image pixels (``[]`` for none). peaks: float (N, 2) ``(y, x)``
            or None; NaN rows are not drawn.
        size: the output side in pixels (the images are square or stretched to a square).
        alpha: the map's weight in the blend (the matplotlib overlays' ``alpha``).

    Returns:
        uint8 (N, size, size, 3), BGR.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"render_overlays needs uint8 (N, H, W) images, got {images.dtype} "
                         f"{images.shape}")
    n, h, w = images.shape
    if n == 0:
        return np.empty((0, size, size, 3), np.uint8)
    # OpenCV's colour conversion, colormap and blend take one 2-D image each: the batch goes
    # through them stacked as one tall image, so each is one vectorised call per batch.
    gray = _resize_batch(images, size).reshape(n * size, size)
    out = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if maps is not None:
        maps = np.asarray(maps)
        if maps.dtype != np.uint8:
            maps = cv2.convertScaleAbs(maps.reshape(n * h, w).astype(np.float32, copy=False),
                                       alpha=255.0).reshape(n, h, w)
        levels = _resize_batch(maps, size).reshape(n * size, size)
        colored = cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO)
        out = cv2.addWeighted(out, 1.0 - alpha, colored, alpha, 0.0)
    out = out.reshape(n, size, size, 3)
    scale = (size / h, size / w)
    for i in range(n):
        peak = None if peaks is None or maps is None else np.asarray(peaks[i], float)
        if len(boxes[i]) or peak is not None:
            _draw_marks(out[i], boxes[i], peak, scale)
    return out


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """One BGR (or gray) uint8 image as JPEG bytes (4:2:0 chroma, OpenCV's default)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} image as JPEG")
    return buf.tobytes()
