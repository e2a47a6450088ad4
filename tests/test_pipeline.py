"""The whole study in one command, on a tiny demo dataset: every stage's outputs, then a resume."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO

from pneumocam.demo import make_demo_dataset
from pneumocam.preprocess import PreprocessConfig, run_preprocess
from pneumocam.processed import read_manifest, read_stats, split_fingerprint


def _env(root: Path) -> dict[str, str]:
    """A bare environment for the scripts, keeping PYTHONPATH when set (a checkout that is not
    the installed one must run its own code)."""
    keep = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
    return {"PNEUMOCAM_ROOT": str(root), "PATH": "/usr/bin:/bin", **keep}


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_resumes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    demo = root / "data" / "demo"
    processed = root / "data" / "Processed"
    make_demo_dataset(demo, n=60, seed=3, workers=1, progress=False)
    run_preprocess(PreprocessConfig(data_dir=demo, out_dir=processed, size=64, workers=1,
                                    progress=False))
    # stats.json names which patient is in which split (what every trained run records)
    assert read_stats(processed)["split_fingerprint"] == split_fingerprint(
        read_manifest(processed))
    env = _env(root)
    cmd = [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), "--epochs", "1",
           "--device", "cpu", "--n", "2", "--n-boot", "20"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Study finished" in first.stdout
    assert str(root / "images" / "index.html") in first.stdout.splitlines()[-1]  # the report, last
    assert (root / "images" / "report" / "gallery.html").is_file()

    for run in ("original", "balanced"):
        assert (root / "weights" / run / "best.pth").is_file()
        assert json.loads((root / "metrics" / f"{run}_eval.json").read_text())["synthetic_demo"]
        history = pd.read_csv(root / "metrics" / f"{run}.csv")
        assert history["epoch"].tolist() == [1]
        assert (root / "metrics" / f"{run}_localization.json").is_file()
        assert (root / "metrics" / f"{run}_maps.npy").is_file()
        assert (root / "images" / "cam" / f"{run}_grid_tp.png").is_file()
    comparison = pd.read_csv(root / "metrics" / "comparison.csv")
    assert set(comparison["run"]) == {"original", "balanced"}
    assert (root / "images" / "comparison.png").is_file()
    assert not (root / "metrics" / "comparison_seeds.csv").exists()  # one seed: one layout
    timing = json.loads((root / "metrics" / "pipeline_timing.json").read_text())
    ran = {s["stage"]: s for s in timing["stages"]}
    assert list(ran) == ["preprocess", "train original", "train balanced", "compare",
                         "interpret original", "interpret balanced", "report"]
    assert all(s["status"] == "ran" and s["wall_s"] > 0 and s["peak_host_mib"] > 0
               for name, s in ran.items() if name != "preprocess")
    assert ran["train original"]["peak_gpu_mib"] is None  # CPU run: no GPU memory
    assert "train original" in first.stdout.split("Stage timing")[1]

    # A second call finds every training and interpretation done and redoes none of them.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("finished earlier") == 2
    assert second.stdout.count("up to date; skipped") == 2
    statuses = {s["stage"]: s["status"] for s in json.loads(
        (root / "metrics" / "pipeline_timing.json").read_text())["stages"]}
    assert statuses["train original"] == statuses["interpret balanced"] == "skipped"
    assert pd.read_csv(root / "metrics" / "balanced.csv")["epoch"].tolist() == [1]

    # A quick look writes apart from the full interpretation, which the pipeline still counts.
    full = (root / "metrics" / "balanced_localization.json").read_bytes()
    quick = subprocess.run([sys.executable, str(REPO / "scripts" / "interpret.py"), "--weights",
                            str(root / "weights" / "balanced" / "best.pth"), "--limit", "20",
                            "--device", "cpu", "--n", "1", "--n-boot", "10"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert quick.returncode == 0, quick.stderr[-3000:]
    assert (root / "metrics" / "balanced_localization.json").read_bytes() == full
    assert json.loads((root / "metrics" / "balanced_limit20_localization.json").read_text()
                      )["limit"] == 20

    # Other settings: the finished trainings are not silently kept, nor silently redone.
    third = subprocess.run(cmd[:2] + ["--epochs", "3", "--seed", "7", "--method", "gradcam",
                                       "--device", "cpu", "--n", "5", "--n-boot", "20"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 2 and "Traceback" not in third.stderr  # refused: pass --overwrite
    assert "weights/original was trained with epochs=1, seed=0; this run asks epochs=3, " \
           "seed=7: pass --overwrite" in third.stderr
    assert pd.read_csv(root / "metrics" / "original.csv")["epoch"].tolist() == [1]


@pytest.mark.slow
def test_pipeline_trains_interprets_and_compares_every_seed(tmp_path: Path) -> None:
    from helpers import make_processed

    root = tmp_path / "root"
    make_processed(root)
    cmd = [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), "--seeds", "0", "1",
           "--epochs", "1", "--device", "cpu", "--n", "0", "--n-boot", "20"]
    done = subprocess.run(cmd, env=_env(root), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for run in ("original", "balanced"):
        assert not (root / "weights" / run).exists()  # several seeds: only <run>-s<seed>
        for seed in (0, 1):
            name = f"{run}-s{seed}"
            config = json.loads((root / "weights" / name / "config.json").read_text())
            assert config["settings"]["seed"] == seed
            assert (root / "metrics" / f"{name}_eval.json").is_file()
            assert json.loads((root / "metrics" / f"{name}_localization.json").read_text()
                              )["config"]["seed"] == seed
    assert not (root / "metrics" / "comparison.csv").exists()
    table = pd.read_csv(root / "metrics" / "comparison_seeds.csv")
    assert {"roc_auc", "average_precision", "sensitivity_at_op", "specificity_at_op",
            "pointing_game", "iou"} <= set(table["metric"])
    auc = table.set_index("metric").loc["roc_auc"]
    assert auc["ci95_lo"] <= auc["diff_mean"] <= auc["ci95_hi"]
    assert auc["diff_s1"] == pytest.approx(auc["run_s1"] - auc["reference_s1"])
    assert (root / "images" / "comparison_seeds.png").is_file()
    doc = json.loads((root / "metrics" / "comparison_seeds.json").read_text())
    assert doc["conclusions"][0] in done.stdout and "spread between seeds" in doc["conclusions"][0]
    page = (root / "images" / "index.html").read_text()  # the report shows the seed comparison
    assert "Over training seeds 0, 1" in page and 'src="comparison_seeds.png"' in page
    assert all(html.escape(line) in page for line in doc["conclusions"])
    assert "No metrics/comparison.csv" not in page and "metrics/comparison_seeds.json" in page
    stages = [s["stage"] for s in json.loads(
        (root / "metrics" / "pipeline_timing.json").read_text())["stages"]]
    assert "train balanced-s1" in stages and stages[-2:] == ["compare seeds", "report"]
    # Per-seed skip rule: a second call redoes none of the four trainings.
    again = subprocess.run(cmd, env=_env(root), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished earlier") == 4
    assert again.stdout.count("up to date; skipped") == 4


@pytest.mark.slow
def test_the_full_profile_runs_at_a_small_size(tmp_path: Path) -> None:
    """Through benchmarks/gpu_study.sh, the one command a GPU machine runs, on the CPU: the
    pipeline's full profile, then the timing and metrics collected into $OUT."""
    root, out = tmp_path / "root", tmp_path / "out"
    env = {**_env(root), "OUT": str(out), "GPU_STUDY_DEVICE": "cpu",
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # its python3 is this one
    cmd = ["bash", str(REPO / "benchmarks" / "gpu_study.sh"), "--demo-n", "60", "--epochs", "1",
           "--n", "0", "--n-boot", "20"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"outputs in {root}" in done.stdout
    collected = {p.name for p in out.iterdir()}
    assert {"pipeline_timing.json", "pipeline.txt", "comparison.csv", "original_eval.json",
            "balanced_eval.json", "balanced_localization.json"} <= collected, collected
    assert json.loads((out / "pipeline_timing.json").read_text()) == json.loads(
        (root / "metrics" / "pipeline_timing.json").read_text())
    assert (root / "data" / "demo-n60" / "stage_2_train_labels.csv").is_file()
    assert read_stats(root / "data" / "Processed-demo-n60")["source"]["kind"] == "demo"
    assert not (root / "data" / "demo").exists()  # the default demo is not touched
    timing = json.loads((root / "metrics" / "pipeline_timing.json").read_text())
    stages = {s["stage"]: s for s in timing["stages"]}
    assert list(stages)[:2] == ["make demo", "preprocess"]
    assert {"train original", "train balanced", "interpret original",
            "interpret balanced"} <= set(stages)
    assert timing["settings"]["profile"] == "full" and timing["settings"]["demo_n"] == 60
    assert timing["total_excluding_s"] == pytest.approx(
        timing["total_wall_s"] - stages["make demo"]["wall_s"], abs=1e-3)
    usage = subprocess.run([sys.executable, str(REPO / "scripts" / "run_pipeline.py"),
                            "--demo-n", "60"], env=_env(root), capture_output=True, text=True,
                           timeout=300)
    assert usage.returncode == 2 and "--profile full" in usage.stderr


def test_pipeline_stops_with_the_failing_stage_named(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cmd = [sys.executable, str(REPO / "scripts" / "run_pipeline.py"), "--epochs", "1",
           "--device", "cpu", "--data-dir", str(tmp_path / "no-such-folder")]
    result = subprocess.run(cmd, env=_env(root),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "error:" in result.stderr and "no-such-folder" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the skipping rule


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """A root with tiny processed data and the run 'original' trained exactly as the pipeline
    would train it with --epochs 1 --device cpu --n-boot 20 (same arguments, in-process)."""
    from helpers import make_processed

    from pneumocam import paths
    from pneumocam.pipeline import PipelineConfig, _training_args
    from pneumocam.train import main as train_main

    root = tmp_path_factory.mktemp("pipeline_root")
    processed = make_processed(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.ROOT_ENV_VAR, str(root))
        config = PipelineConfig(epochs=1, device="cpu", n_boot=20)
        args = _training_args(config, "original", processed)
        assert train_main(args[1:] + ["--no-progress"], sampler="original") == 0
        yield root, processed


def _decide(processed: Path, **settings):
    from pneumocam.pipeline import PipelineConfig, _training_args

    return _training_args(PipelineConfig(**{"epochs": 1, "device": "cpu", "n_boot": 20,
                                            **settings}), "original", processed)


def test_a_finished_run_is_skipped_only_with_the_same_settings(trained_root, monkeypatch):
    from pneumocam import paths
    from pneumocam.errors import ConfigError

    root, processed = trained_root
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    assert _decide(processed) is None  # same settings, same data: finished, skipped
    with pytest.raises(ConfigError) as err:
        _decide(processed, epochs=3, seed=7)
    message = str(err.value)
    assert "weights/original was trained with epochs=1, seed=0" in message
    assert "this run asks epochs=3, seed=7" in message and "--overwrite" in message
    args = _decide(processed, epochs=3, seed=7, overwrite=True)
    assert args[-1] == "--overwrite" and args[args.index("--epochs") + 1] == "3"


def test_a_finished_run_on_other_data_is_refused(trained_root, tmp_path, monkeypatch):
    from helpers import make_processed

    from pneumocam import paths
    from pneumocam.errors import ConfigError
    from pneumocam.processed import data_identity

    root, processed = trained_root
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    other = make_processed(tmp_path, n_train=40, n_val=20, n_test=20)  # same kind, other split
    with pytest.raises(ConfigError) as err:
        _decide(other)
    message = str(err.value)
    assert data_identity(processed).split_fingerprint in message
    assert data_identity(other).split_fingerprint in message and str(other) in message


def test_an_unfinished_run_resumes_only_with_the_same_settings(trained_root, tmp_path,
                                                               monkeypatch):
    import shutil

    from pneumocam import paths
    from pneumocam.errors import ConfigError

    root, processed = trained_root
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(copy))
    (copy / "metrics" / "original_eval.json").unlink()  # killed before its evaluation
    assert _decide(processed)[-1] == "--resume"
    with pytest.raises(ConfigError, match=r"\(unfinished\) was started with seed=0; this run "
                                          r"asks seed=7"):
        _decide(processed, seed=7)


def test_interpretation_reruns_when_settings_or_data_differ(trained_root, monkeypatch):
    from pneumocam import paths
    from pneumocam.pipeline import PipelineConfig, _interpret_settings, interpretation_differences
    from pneumocam.processed import DataIdentity, data_identity

    root, processed = trained_root
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    identity = data_identity(processed)
    wanted = _interpret_settings(PipelineConfig(n_overlays=32, n_boot=20))
    assert interpretation_differences("original", wanted, identity) == [
        "no readable original_localization.json"]
    report = root / "metrics" / "original_localization.json"
    report.write_text(json.dumps({"config": wanted, "data_identity": identity.to_dict()}))
    assert interpretation_differences("original", wanted, identity) == []
    asked = _interpret_settings(PipelineConfig(method="gradcam", n_overlays=5, n_boot=20))
    assert interpretation_differences("original", asked, identity) == ["method=cam -> gradcam",
                                                                       "n=32 -> 5"]
    other = DataIdentity("demo", None, "0123456789abcdef")
    assert "0123456789abcdef" in interpretation_differences("original", wanted, other)[0]
    report.write_text(json.dumps({"config": {**wanted, "limit": 20},
                                  "data_identity": identity.to_dict()}))
    assert interpretation_differences("original", wanted, identity) == ["limit=20 -> default"]
    report.unlink()


def test_the_skip_rule_compares_the_arch(trained_root, monkeypatch):
    """A finished resnet18 run is not reused for --arch resnet18-os16; an explicit --arch
    resnet18 matches it, and so does a config written before runs recorded their arch."""
    from pneumocam import paths
    from pneumocam.errors import ConfigError

    root, processed = trained_root
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    with pytest.raises(ConfigError) as err:
        _decide(processed, extra_train_args=["--arch", "resnet18-os16"])
    assert "arch=resnet18;" in str(err.value) and "arch=resnet18-os16" in str(err.value)
    assert _decide(processed, extra_train_args=["--arch", "resnet18"]) is None
    config_path = paths.run_files("original")["config"]
    saved = config_path.read_text()
    try:
        config = json.loads(saved)
        del config["settings"]["arch"], config["arguments"]["arch"]
        config_path.write_text(json.dumps(config))
        assert _decide(processed) is None
        assert _decide(processed, extra_train_args=["--arch", "resnet18"]) is None
    finally:
        config_path.write_text(saved)
