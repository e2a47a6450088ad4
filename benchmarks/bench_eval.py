"""What the fp32 final evaluation costs per test image, beside the bf16 forward, same run.

A run publishes probabilities computed in float32 without TF32
(:func:`pneumocam.train.final_probabilities`): bf16's 8 significant bits make many probabilities
of a large split tie, which can move the Youden threshold chosen on them, and the interpretation
recomputes them in float32 (see that function's docstring). Per-epoch validation keeps the bf16
forward of training (:func:`pneumocam.train.predict_logits` with ``amp_dtype=bfloat16``). Rows,
on the same model and the same uint8 images held on the host like a loaded split:

1. bf16 autocast forward, channels-last, TF32 allowed (the baseline: per-epoch validation on CUDA);
2. the fp32 final evaluation, exactly as a run computes it.

Besides images/s it prints the cost per image, the cost of an RSNA-size test split
(``--split-size``, default 2,669 images: 10% of 26,684), how far the two sets of probabilities
are apart and how many distinct values each has (ties are what the fp32 evaluation avoids).
Arrays only (no DICOM, no dataset). On a CPU there is no TF32 and the project evaluates in fp32
anyway; bf16 autocast there is measured for completeness.

    python benchmarks/bench_eval.py                       # CUDA if present, else a short CPU run
    python benchmarks/bench_eval.py --device cpu --n-images 128 --repeats 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_timing import median_seconds
from bench_train import SEED_MEAN, SEED_STD, synth_images

from pneumocam.checkpoint import load_model_state
from pneumocam.model import build_model, load_state_dict_checked
from pneumocam.train import final_probabilities, predict_logits


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if cuda else "cpu", help="torch device (default: cuda if available)")
    p.add_argument("--n-images", type=int, default=None, help="synthetic images (default: 8192 on CUDA, 128 on CPU)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=None,
                   help="bf16 row's batch (default: the evaluation's own, 512 on CUDA, 64 on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed passes per row, median reported (default: 5 on CUDA, 2 on CPU)")
    p.add_argument("--split-size", type=int, default=2669, help="test images the per-split cost is given for")
    p.add_argument("--weights", default=None, help="a checkpoint (weights/<run>/best.pth) instead of random weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the model and the images")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args()
    on_cuda = args.device.startswith("cuda")
    args.n_images = args.n_images or (8192 if on_cuda else 128)
    args.batch_size = args.batch_size or (512 if on_cuda else 64)
    args.repeats = args.repeats or (5 if on_cuda else 2)
    for name in ("n_images", "size", "batch_size", "repeats", "split_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True  # as training sets it
    model = build_model()
    if args.weights:
        load_state_dict_checked(model, load_model_state(args.weights), args.weights)
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    images = torch.from_numpy(synth_images(args.n_images, args.size, args.seed)[0])  # host uint8
    n = args.n_images

    def bf16() -> torch.Tensor:
        with torch.no_grad():
            return predict_logits(model, images, SEED_MEAN, SEED_STD, device, args.batch_size,
                                  amp_dtype=torch.bfloat16)

    def fp32() -> np.ndarray:
        with torch.no_grad():
            return final_probabilities(model, images, SEED_MEAN, SEED_STD, device)

    t_bf16 = median_seconds(bf16, bf16, args.repeats, device)
    t_fp32 = median_seconds(fp32, fp32, args.repeats, device)
    p_bf16 = torch.sigmoid(bf16()).double().cpu().numpy()
    p_fp32 = fp32()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {n} images {args.size}x{args.size} "
          f"uint8 on the host, median of {args.repeats}, threads {torch.get_num_threads()}")
    print(f"{'forward':44s} {'images/s':>10s} {'us/image':>9s} {f'{args.split_size} images':>13s} "
          f"{'distinct p':>11s}")
    rows = []
    for label, seconds, probs in (("bf16 autocast, TF32 (per-epoch validation)", t_bf16, p_bf16),
                                  ("fp32, no TF32 (final evaluation)", t_fp32, p_fp32)):
        per_image = seconds / n
        distinct = len(np.unique(probs))
        print(f"{label:44s} {n / seconds:10.1f} {per_image * 1e6:9.1f} "
              f"{per_image * args.split_size:12.3f}s {distinct:11d}")
        rows.append({"forward": label, "images_per_s": n / seconds, "us_per_image": per_image * 1e6,
                     "split_seconds": per_image * args.split_size, "distinct_probabilities": distinct})
    max_diff = float(np.abs(p_fp32 - p_bf16).max())
    print(f"ratio fp32 / bf16 time per image: {t_fp32 / t_bf16:.2f}x; max |p_fp32 - p_bf16| "
          f"{max_diff:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": vars(args), "device": name, "torch": torch.__version__, "rows": rows,
            "ratio_fp32_over_bf16": t_fp32 / t_bf16, "max_abs_prob_diff": max_diff}, indent=2))


if __name__ == "__main__":
    main()
