"""Maps per second: the project's batched CAM against pytorch_grad_cam's GradCAM, same run.

One model, one device, one set of synthetic images (arrays only: no DICOM, no dataset):

1. ``pytorch_grad_cam.GradCAM`` on ``layer4`` with ``BinaryClassifierOutputTarget(1)``, fp32,
   maps returned to the host (what the library does);
2. ``pneumocam.cam.compute_cams(method="cam")``, fp32, maps (raw + normalised) copied to the host,
   three ways (its ``upsample`` argument): upsampled to 224x224 on the device and copied; only the
   7x7 maps copied and upsampled on the host; only the 7x7 maps copied, upsampling left to the
   images that need it (``CamResult.full_size``). The three give the same maps (checked);
3. on CUDA: forward + CAM in bf16 with images and maps kept on the device, at a larger batch.

The correlation column compares each row's maps with the library's Grad-CAM maps, per image,
with the ReLU applied at feature-map resolution before upsampling on both sides (the library's
order; ReLU after upsampling alone costs about 0.03 of correlation). For this architecture the
two are equal in theory (Grad-CAM at layer4 = CAM / (h * w)).

Needs torch, torchvision, numpy, opencv-python-headless and grad-cam (with its imports ttach,
tqdm, scipy, scikit-learn, matplotlib). Without ``--weights`` the model is randomly initialised
and its fc weights are centred (zero mean) so that the maps have positive and negative parts;
otherwise every ReLU'd map of a random model can be zero and the correlation undefined.

    python benchmarks/bench_cam.py                       # CUDA if present, else a short CPU run
    python benchmarks/bench_cam.py --device cpu --n-images 64 --batch-size 32 --repeats 2

Measured (random model, 224x224, maps equal: correlation 1.00000 fp32, 0.99997 bf16):

- one H200, torch 2.11, ``--n-images 2048 --repeats 3``, before the channels-last and pinned
  input staging in ``compute_cams``: GradCAM 1,887 images/s at batch 64; compute_cams to host
  10,472 (5.6x); bf16 on device at batch 256 29,530 (15.7x). Separate probes on the same
  machine: channels-last weights 34,737 on device (bf16, batch 256) and 11,465 to host; with
  pinned input images 15,565 to host (8.2x).
- 2 shared CPU cores, torch 2.14, ``--device cpu --n-images 64 --batch-size 32 --repeats 2``:
  GradCAM 5.5 images/s, compute_cams 12.0 (2.2x).
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from bench_timing import median_seconds
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

from pneumocam.cam import class_activation_map, compute_cams, upsample_maps
from pneumocam.checkpoint import load_model_state
from pneumocam.model import build_model, load_state_dict_checked


@dataclass
class BenchConfig:
    device: str
    batch_size: int
    device_batch_size: int
    n_images: int
    size: int
    repeats: int
    n_corr: int
    weights: str | None
    seed: int
    json: str | None


def parse_args() -> BenchConfig:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if cuda else "cpu", help="torch device (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of rows 1 and 2 (the same for both)")
    p.add_argument("--device-batch-size", type=int, default=256, help="batch size of the bf16 on-device row (CUDA)")
    p.add_argument("--n-images", type=int, default=None, help="synthetic images (default: 4096 on CUDA, 64 on CPU)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--repeats", type=int, default=None, help="timed passes per row, median reported (default: 5 on CUDA, 2 on CPU)")
    p.add_argument("--n-corr", type=int, default=128, help="images used for the correlation column")
    p.add_argument("--weights", default=None, help="a checkpoint (weights/<run>/best.pth) instead of random weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the model and the images")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = p.parse_args()
    on_cuda = a.device.startswith("cuda")
    return BenchConfig(
        device=a.device, batch_size=a.batch_size, device_batch_size=a.device_batch_size,
        n_images=a.n_images or (4096 if on_cuda else 64), size=a.size,
        repeats=a.repeats or (5 if on_cuda else 2), n_corr=a.n_corr, weights=a.weights,
        seed=a.seed, json=a.json,
    )


def library_gradcam(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """The library's Grad-CAM maps (N, H, W) in [0, 1], batch by batch, on the host."""
    out = []
    with GradCAM(model=model, target_layers=[model.layer4]) as cam:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            out.append(cam(input_tensor=batch, targets=[BinaryClassifierOutputTarget(1)] * len(batch)))
    return np.concatenate(out)


def relu_first_cam(model, images: torch.Tensor, device, amp: bool) -> np.ndarray:
    """CAM with ReLU at feature resolution, then the same bilinear upsampling: (N, H, W)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        _, low = class_activation_map(model, images.to(device))
    return upsample_maps(low.float().clamp_min(0), tuple(images.shape[-2:])).cpu().numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Mean and min per-image Pearson correlation, over images where both maps vary."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    den = np.sqrt((a**2).sum(1) * (b**2).sum(1))
    ok = den > 0
    r = (a[ok] * b[ok]).sum(1) / den[ok]
    return (float(r.mean()), float(r.min()), int(ok.sum())) if ok.any() else (float("nan"), float("nan"), 0)


def main() -> None:
    cfg = parse_args()
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model()
    if cfg.weights:
        load_state_dict_checked(model, load_model_state(cfg.weights), cfg.weights)
    else:
        with torch.no_grad():  # zero-mean fc weights: random-model maps with both signs
            model.fc.weight -= model.fc.weight.mean()
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    images = torch.randn(cfg.n_images, 1, cfg.size, cfg.size, generator=gen)  # host, like a loader
    first = images[: cfg.batch_size]
    n = cfg.n_images

    rows = []
    t_lib = median_seconds(lambda: library_gradcam(model, images, cfg.batch_size),
                  lambda: library_gradcam(model, first, cfg.batch_size), cfg.repeats, device)
    corr_imgs = images[: cfg.n_corr]
    lib_maps = library_gradcam(model, corr_imgs, cfg.batch_size)
    rows.append(("pytorch_grad_cam GradCAM fp32 -> host", cfg.batch_size, n / t_lib, 1.0, None))

    c = correlation(relu_first_cam(model, corr_imgs, device, amp=False), lib_maps)
    reference = compute_cams(model, corr_imgs, "cam", cfg.batch_size)
    for place, label in (("device", "compute_cams cam fp32 -> host"),
                         ("host", "  7x7 maps to host, upsampled there"),
                         ("none", "  7x7 maps to host, upsampled on demand")):
        def run(x, place=place):
            return compute_cams(model, x, "cam", cfg.batch_size, upsample=place)
        t_cam = median_seconds(lambda run=run: run(images), lambda run=run: run(first), cfg.repeats, device)
        # the same maps whichever side upsamples ("none": as CamResult.full_size makes them)
        maps = run(corr_imgs)
        raw = maps.full_size(tuple(corr_imgs.shape[-2:]))[0] if place == "none" else maps.raw
        max_diff = float((raw - reference.raw).abs().max())
        if max_diff > 1e-4 * max(1.0, float(reference.raw.abs().max())):
            raise SystemExit(f"upsample={place!r} changed the maps: max |diff| {max_diff:.3g}")
        rows.append((label, cfg.batch_size, n / t_cam, t_lib / t_cam, c))

    if device.type == "cuda":
        on_dev = images.to(device)
        bs = cfg.device_batch_size
        t_dev = median_seconds(lambda: compute_cams(model, on_dev, "cam", bs, keep_on_device=True),
                      lambda: compute_cams(model, on_dev[:bs], "cam", bs, keep_on_device=True),
                      cfg.repeats, device)
        c = correlation(relu_first_cam(model, corr_imgs, device, amp=True), lib_maps)
        rows.append(("compute_cams cam bf16 on device", bs, n / t_dev, t_lib / t_dev, c))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {n} images {cfg.size}x{cfg.size}, "
          f"median of {cfg.repeats}, threads {torch.get_num_threads()}")
    print(f"{'method':40s} {'batch':>6s} {'images/s':>10s} {'vs GradCAM':>11s} {'corr mean/min (n)':>22s}")
    results = []
    for label, batch, ips, ratio, corr in rows:
        corr_s = "reference" if corr is None else f"{corr[0]:.5f}/{corr[1]:.5f} ({corr[2]})"
        print(f"{label:40s} {batch:6d} {ips:10.1f} {ratio:10.2f}x {corr_s:>22s}")
        results.append({"method": label, "batch": batch, "images_per_s": ips, "ratio_vs_gradcam": ratio,
                        "corr_mean": None if corr is None else corr[0],
                        "corr_min": None if corr is None else corr[1]})
    if cfg.json:
        Path(cfg.json).write_text(json.dumps({"config": asdict(cfg), "device": name,
                                              "torch": torch.__version__, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
