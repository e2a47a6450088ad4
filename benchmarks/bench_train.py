"""Training throughput: the project's epoch function against a seed-style loop, same data, same
device, one run; prints images/second of both and the ratio.

- project: ``pneumocam.train.train_one_epoch`` exactly as ``train()`` drives it (on CUDA: the
  split resident on the GPU as uint8, sampling/augmentation/normalisation there, bf16 autocast,
  channels_last, fused AdamW; on CPU: the DataLoader path, fp32, channels_last).
- seed-style: ``torchvision.datasets.DatasetFolder`` over per-image float16 ``.npy`` files,
  ``np.load(p).astype(np.float32)``, CPU transforms (ToTensor, Normalize(0.49, 0.248),
  RandomAffine(5, translate=(0, 0.05), scale=(0.9, 1.1)), RandomResizedCrop(224, scale=(0.35, 1))),
  batch 64, fp32, Adam, ``loss.item()`` every step.

Needs only torch/torchvision/numpy (no pydicom): images are synthesised (or read from a processed
folder with --data-dir). Each loop is timed over a fixed number of steps after warm-up, with a
CUDA synchronize around the timed region.

    python benchmarks/bench_train.py                      # CPU here: about 2 minutes
    python benchmarks/bench_train.py --device cuda        # on a GPU machine
    python benchmarks/bench_train.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_timing import sync_device
from torch import nn

from pneumocam.data import make_generator
from pneumocam.distributed import resolve_device
from pneumocam.model import build_model
from pneumocam.provenance import cpu_model
from pneumocam.train import (
    StepContext,
    make_batches,
    make_optimizer,
    make_scheduler,
    train_one_epoch,
)

SEED_MEAN, SEED_STD = 0.49, 0.248
SEED_BATCH = 64


def synth_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random-ish uint8 (size, size) radiograph-like images and ~22% positive labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = (120 + 80 * np.sin(3 * xx) * np.cos(2 * yy)).astype(np.int16)
    images = np.empty((n, size, size), dtype=np.uint8)
    for start in range(0, n, 512):  # chunks keep the int16 temporaries small
        m = min(512, n - start)
        noise = rng.integers(-40, 40, (m, size, size), dtype=np.int16)
        images[start:start + m] = np.clip(base + noise, 0, 255).astype(np.uint8)
    labels = (rng.random(n) < 0.22).astype(np.int64)
    labels[:2] = (0, 1)
    return images, labels


def load_images(data_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` training images of a processed folder."""
    from pneumocam.processed import load_split

    split = load_split(data_dir, "train", limit=n)
    return split.images, split.labels


def bench_project(images: np.ndarray, labels: np.ndarray, device: torch.device, batch: int,
                  steps: int, warmup: int, compile_model: bool, channels_last: bool = True) -> float:
    """Images/second of ``train_one_epoch`` over ``steps`` steps after ``warmup`` steps, in
    NHWC (``channels_last``, the project's default) or contiguous NCHW memory format."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    model = build_model().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, 1e-3, 1e-4, device)
    sched = make_scheduler(opt, "cosine", 1e-3, warmup + steps + 1)
    run_model = torch.compile(model) if compile_model else model
    ctx = StepContext(model=run_model, optimizer=opt, scheduler=sched,
                      loss_fn=nn.BCEWithLogitsLoss(), mean=float(images.mean() / 255),
                      std=float(images.std() / 255), device=device, channels_last=channels_last,
                      amp_dtype=torch.bfloat16 if device.type == "cuda" else None)
    batches = make_batches(images, labels, batch, "balanced", 0, device)
    if len(batches) < 1:
        raise SystemExit(f"--n-images {len(images)} makes no full batch of {batch}")
    gen = make_generator(1, device)

    def run(n_steps: int, first_epoch: int) -> tuple[int, float]:
        done, seen, seconds, epoch = 0, 0, 0.0, first_epoch
        while done < n_steps:
            stats = train_one_epoch(ctx, batches.epoch(epoch), gen, max_steps=n_steps - done)
            done, seen, seconds, epoch = done + stats.steps, seen + stats.n_images, \
                seconds + stats.seconds, epoch + 1
        return seen, seconds

    run(warmup, 0)
    sync_device(device)
    seen, seconds = run(steps, 1000)
    return seen / seconds


def _load_f16(path: str) -> np.ndarray:
    return np.load(path).astype(np.float32)


def bench_seed_style(images: np.ndarray, labels: np.ndarray, device: torch.device, steps: int,
                     warmup: int, workers: int) -> float:
    """Images/second of the seed's loop over ``steps`` steps of 64 after ``warmup`` steps."""
    from torchvision import transforms
    from torchvision.datasets import DatasetFolder

    n = min(len(images), (steps + warmup) * SEED_BATCH)
    size = images.shape[-1]
    with tempfile.TemporaryDirectory(prefix="bench_seed_") as tmp:
        for i in range(n):
            folder = Path(tmp) / str(int(labels[i]))
            folder.mkdir(exist_ok=True)
            np.save(folder / f"{i:06d}.npy", (images[i] / 255.0).astype(np.float16))
        tf = transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize(SEED_MEAN, SEED_STD),
            transforms.RandomAffine(degrees=5, translate=(0, 0.05), scale=(0.9, 1.1)),
            transforms.RandomResizedCrop(size, scale=(0.35, 1), antialias=True),
        ])
        dataset = DatasetFolder(tmp, loader=_load_f16, extensions=(".npy",), transform=tf)
        loader = torch.utils.data.DataLoader(dataset, batch_size=SEED_BATCH, shuffle=True,
                                             num_workers=workers, drop_last=True)
        if len(loader) == 0:  # drop_last: no batch at all, and the loop below would never end
            raise SystemExit(f"--n-images {len(images)} makes no full batch of {SEED_BATCH} for "
                             f"the seed-style loop: use at least {SEED_BATCH} or --skip-baseline")
        torch.manual_seed(0)
        model = build_model().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.BCEWithLogitsLoss()
        model.train()
        done, seen, running = 0, 0, 0.0
        start = None
        while done < steps + warmup:
            for x, y in loader:
                if done == warmup:
                    sync_device(device)
                    start = time.perf_counter()
                x, y = x.to(device), y.float().to(device)
                loss = loss_fn(model(x).squeeze(1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += loss.item()
                done += 1
                if done > warmup:
                    seen += x.shape[0]
                if done >= steps + warmup:
                    break
        sync_device(device)
        return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="device for both loops (auto: CUDA when available)")
    parser.add_argument("--n-images", type=int, default=None,
                        help="training images (default: 8192 on CUDA, 512 on CPU)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps of the project loop (default: 60 on CUDA, 8 on CPU)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed warm-up steps (default: 15 on CUDA, 1 on CPU; more with "
                             "--compile)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="project batch size (default: 256 on CUDA, 32 on CPU)")
    parser.add_argument("--baseline-steps", type=int, default=None,
                        help="timed steps of the seed-style loop, batch 64 (default: 20 on CUDA, "
                             "4 on CPU)")
    parser.add_argument("--baseline-workers", type=int, default=0,
                        help="DataLoader workers of the seed-style loop (the seed used 0)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the project model")
    parser.add_argument("--memory-format", choices=["channels_last", "contiguous", "both"],
                        default="channels_last",
                        help="the project loop's memory format; 'both' times each and prints "
                             "the ratio (the faster one depends on the CPU's vector ISA)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="time only the project loop")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="take images from this processed folder instead of synthesising")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    n = args.n_images or (8192 if cuda else 512)
    batch = args.batch_size or (256 if cuda else 32)
    steps = args.steps or (60 if cuda else 8)
    warmup = args.warmup or ((30 if args.compile else 15) if cuda else 1)
    base_steps = args.baseline_steps or (20 if cuda else 4)
    name = torch.cuda.get_device_name(device) if cuda else cpu_model() or "cpu"
    print(f"torch {torch.__version__}, device {device} ({name}), "
          f"CPU threads {torch.get_num_threads()}", flush=True)

    t0 = time.perf_counter()
    images, labels = (load_images(args.data_dir, n) if args.data_dir
                      else synth_images(n, args.size))
    print(f"{len(images)} images of {images.shape[1]}x{images.shape[2]} "
          f"({'from ' + str(args.data_dir) if args.data_dir else 'synthesised'}) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    formats = (["channels_last", "contiguous"] if args.memory_format == "both"
               else [args.memory_format])
    by_format = {}
    for fmt in formats:
        t0 = time.perf_counter()
        by_format[fmt] = bench_project(images, labels, device, batch, steps, warmup, args.compile,
                                       channels_last=fmt == "channels_last")
        print(f"project loop ({fmt}) done in {time.perf_counter() - t0:.1f} s", flush=True)
    project = by_format[formats[0]]
    seed = None
    if not args.skip_baseline:
        t0 = time.perf_counter()
        seed = bench_seed_style(images, labels, device, base_steps, 2 if cuda else 1,
                                args.baseline_workers)
        print(f"seed-style loop done in {time.perf_counter() - t0:.1f} s", flush=True)

    rows = [("project", ("bf16, GPU-resident uint8" if cuda else "fp32, DataLoader")
             + f", {fmt}" + (", torch.compile" if args.compile else ""), batch, steps, ips)
            for fmt, ips in by_format.items()]
    if seed is not None:
        rows.append(("seed-style", f"fp32, DatasetFolder .npy, CPU transforms, "
                                   f"{args.baseline_workers} workers", SEED_BATCH, base_steps, seed))
    print()
    print(f"{'loop':<11} {'setup':<58} {'batch':>5} {'steps':>5} {'images/s':>10}")
    for loop, setup, b, s, ips in rows:
        print(f"{loop:<11} {setup:<58} {b:>5} {s:>5} {ips:>10.1f}")
    if seed is not None:
        print(f"\nratio project / seed-style: {project / seed:.1f}x  (same data, {device})")
    if len(by_format) == 2:
        ratio = by_format["channels_last"] / by_format["contiguous"]
        print(f"ratio channels_last / contiguous: {ratio:.2f}x  ({device}, CPU kernels "
              f"{torch.backends.cpu.get_cpu_capability()})")
    if cuda:
        target = 16000 if args.compile else 11000
        print(f"targets on an H100/H200: project >= {target} images/s, ratio >= 20x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
