"""Timing shared by the benchmarks: a CUDA-aware clock around a call, median of repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], warmup: Callable[[], object], repeats: int,
                   device: torch.device) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call of ``warmup``
    (allocator, cuDNN autotuning), each timed up to the device's last kernel."""
    warmup()
    sync_device(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync_device(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
