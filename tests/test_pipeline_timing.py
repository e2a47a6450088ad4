"""metrics/pipeline_timing.json: each stage's wall time and peak memory, measured per stage; and
the RSNA-size profile's settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pneumocam.errors import ConfigError, PneumocamError
from pneumocam.pipeline import PipelineConfig
from pneumocam.pipeline_profiles import RSNA_N, apply_profile
from pneumocam.stage_timing import PipelineTimer


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "stage.py"
    path.write_text(body)
    return str(path)


def test_a_stage_records_its_own_peak_memory_and_exit(project_root, tmp_path):
    # 200 MiB held by the stage itself: its record must show it, whatever the pipeline holds.
    grow = _script(tmp_path, "import sys\nblock = bytearray(200 * 1024 * 1024)\n"
                             "block[::4096] = b'x' * len(block[::4096])\n"
                             "assert sys.argv[1:] == ['--flag', 'v'], sys.argv\n")
    timer = PipelineTimer({"profile": "test"})
    record = timer.run("grow", [grow, "--flag", "v"])
    assert record.status == "ran" and record.host_memory_scope == "stage"
    assert record.peak_host_mib > 200 and record.wall_s > 0
    assert record.peak_gpu_mib is None  # the script never used CUDA
    with timer.in_process("inside"):
        pass
    timer.skipped("train original", "finished earlier")
    fail = _script(tmp_path, "import sys\nsys.exit(3)\n")
    with pytest.raises(PneumocamError, match="stage 'fails' failed \\(exit 3\\)"):
        timer.run("fails", [fail], probe=False)
    doc = json.loads((project_root / "metrics" / "pipeline_timing.json").read_text())
    assert [(s["stage"], s["status"]) for s in doc["stages"]] == [
        ("grow", "ran"), ("inside", "ran"), ("train original", "skipped"), ("fails", "failed")]
    assert doc["stages"][1]["host_memory_scope"] == "pipeline so far"
    assert doc["machine"]["cpu"] and doc["machine"]["cpu_count"] >= 1
    assert doc["settings"] == {"profile": "test"} and "git" in doc["provenance"]
    assert doc["total_wall_s"] >= sum(s["wall_s"] for s in doc["stages"])


def test_the_probe_passes_the_exit_status_through(project_root, tmp_path):
    import subprocess

    report = tmp_path / "probe.json"
    script = _script(tmp_path, "import sys\nprint(sys.argv)\nsys.exit(5)\n")
    done = subprocess.run([sys.executable, "-m", "pneumocam.stage_probe", str(report), script, "a"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 5 and f"['{script}', 'a']" in done.stdout
    assert json.loads(report.read_text()) == {"gpu_peak_bytes": None, "gpu_name": None}


def test_the_full_profile_is_rsna_sized_with_real_data_epochs(project_root):
    full = apply_profile(PipelineConfig(device="cpu"), "full")
    assert full.demo_n == RSNA_N == 26_684 and full.epochs == 20 and full.profile == "full"
    assert full.data_dir == project_root / "data" / f"demo-n{RSNA_N}"
    assert full.processed_dir == project_root / "data" / f"Processed-demo-n{RSNA_N}"
    assert "--batch-size" not in full.extra_train_args  # CPU: the trainer's own default
    small = apply_profile(PipelineConfig(device="cpu", epochs=1), "full", demo_n=300)
    assert (small.demo_n, small.epochs) == (300, 1)
    assert apply_profile(PipelineConfig(), "default") == PipelineConfig()
    with pytest.raises(ConfigError, match="--profile full"):
        apply_profile(PipelineConfig(), "default", demo_n=300)
    with pytest.raises(ConfigError, match="drop --data-dir"):
        apply_profile(PipelineConfig(data_dir=Path("x")), "full")


def test_seed_flags_that_contradict_are_usage_errors(tmp_path):
    from helpers import run_script

    for args, message in ((["--seeds", "1", "1"], "each seed once"),
                          (["--seed", "3", "--seeds", "4"], "disagree")):
        done = run_script("run_pipeline.py", *args, root=tmp_path, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "metrics").exists()  # refused before any work
