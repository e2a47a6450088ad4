"""The benchmark scripts run end to end at toy sizes and print their ratios.

These check that the scripts work, not how fast anything is (speed is for the benchmarks).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_preprocess_prints_ratio_floor_and_memory(tmp_path: Path) -> None:
    text = run("bench_preprocess.py", "--n", "16", "--repeat", "1", "--workers", "2",
               "--tmp", str(tmp_path))
    for line in ("project / baseline:", "per core (1 worker vs baseline):", "floor x 2 workers:",
                 "ceiling for that ratio", "project peak memory:"):
        assert line in text, text
    assert list(tmp_path.iterdir()) == []  # its work folder is removed


def test_bench_train_prints_ratio_on_cpu() -> None:
    text = run("bench_train.py", "--device", "cpu", "--n-images", "64", "--size", "32",
               "--steps", "2", "--warmup", "1", "--batch-size", "8", "--baseline-steps", "1")
    assert "ratio project / seed-style:" in text, text


def test_bench_train_compares_memory_formats() -> None:
    text = run("bench_train.py", "--device", "cpu", "--n-images", "64", "--size", "32",
               "--steps", "2", "--skip-baseline", "--memory-format", "both")
    assert "channels_last" in text and "contiguous" in text
    assert re.search(r"ratio channels_last / contiguous: [0-9.]+x", text)


def test_bench_train_refuses_too_few_images_for_the_seed_loop() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "bench_train.py"), "--device", "cpu",
                          "--n-images", "16", "--size", "32", "--steps", "1", "--batch-size", "4"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "no full batch of 64" in out.stderr


def test_bench_cam_prints_ratio_and_correlation_on_cpu() -> None:
    text = run("bench_cam.py", "--device", "cpu", "--n-images", "8", "--size", "64",
               "--batch-size", "4", "--repeats", "1", "--n-corr", "4")
    row = next(line for line in text.splitlines() if line.startswith("compute_cams"))
    assert "x" in row and "nan" not in row, text


def test_bench_cam_checks_every_upsampling_place_on_cpu() -> None:
    text = run("bench_cam.py", "--device", "cpu", "--n-images", "8", "--size", "64",
               "--batch-size", "4", "--repeats", "1", "--n-corr", "4")
    for label in ("7x7 maps to host, upsampled there", "7x7 maps to host, upsampled on demand"):
        row = next(line for line in text.splitlines() if line.strip().startswith(label))
        assert "x" in row and "nan" not in row, text


def test_bench_eval_prints_fp32_cost_beside_bf16(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    text = run("bench_eval.py", "--device", "cpu", "--n-images", "8", "--size", "64",
               "--repeats", "1", "--split-size", "100", "--json", str(out))
    assert re.search(r"ratio fp32 / bf16 time per image: \d+\.\d\dx", text), text
    result = json.loads(out.read_text())
    assert [r["forward"].split(",")[0] for r in result["rows"]] == ["bf16 autocast", "fp32"]
    for row in result["rows"]:
        assert row["images_per_s"] > 0 and row["split_seconds"] == pytest.approx(row["us_per_image"] * 1e-4)
        assert 1 <= row["distinct_probabilities"] <= 8
    assert 0 <= result["max_abs_prob_diff"] < 0.1  # bf16 rounding, not a different model


def test_bench_report_prints_ratio_rate_and_sizes() -> None:
    text = run("bench_report.py", "--n", "8", "--n-baseline", "2", "--size", "64", "--repeat", "1")
    ratio = next(line for line in text.splitlines() if line.startswith("ratio batched"))
    assert "x (target 10x" in ratio and "nan" not in ratio, text
    for line in ("thumbnails/s on one core", "average thumbnail:", "the real split for two runs"):
        assert line in text, text
