"""Training on a tiny processed dataset (48/16/16 images of 32x32, CPU): the per-epoch CSV,
best-by-AUC selection, determinism, resume after kill -9, checkpoint safety, clear errors and
the two scripts' smoke runs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO, make_processed, predict_proba

from pneumocam import paths
from pneumocam import train as trainmod
from pneumocam.checkpoint import load_checkpoint, load_model_state
from pneumocam.errors import CheckpointError, ConfigError, ProcessedDataError
from pneumocam.metrics import safe_roc_auc
from pneumocam.model import build_model
from pneumocam.processed import load_split, read_stats
from pneumocam.run_state import CSV_COLUMNS
from pneumocam.train import (
    PREDICTION_COLUMNS,
    TIMING_COLUMNS,
    TrainConfig,
    TrainSettings,
    build_arg_parser,
    config_from_args,
    lr_factor,
    train,
)

# Settings shared by the runs that must agree (determinism, resume): 3 epochs of 3 steps.
BASE = dict(sampler="balanced", epochs=3, batch_size=16, n_boot=20, progress=False, seed=3)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A PNEUMOCAM_ROOT with a tiny processed dataset, shared by this module's runs."""
    root = tmp_path_factory.mktemp("train_root")
    make_processed(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.ROOT_ENV_VAR, str(root))
        yield root


@pytest.fixture(scope="module")
def run_a(root):
    return train(TrainConfig(run_name="a", **BASE))


def _csv(run: str) -> pd.DataFrame:
    return pd.read_csv(paths.metrics_dir() / f"{run}.csv")


def _state_equal(p: Path, q: Path) -> bool:
    a, b = load_model_state(p), load_model_state(q)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _val_probs(root: Path, weights: Path) -> tuple[np.ndarray, np.ndarray]:
    processed = root / "data" / "Processed"
    stats = read_stats(processed)
    model = build_model()
    model.load_state_dict(load_model_state(weights))
    val = load_split(processed, "val")
    return val.labels, predict_proba(model, val.images, stats["mean"], stats["std"])


def test_outputs_and_csv_columns(root, run_a):
    df = _csv("a")
    assert tuple(df.columns) == CSV_COLUMNS
    assert df["epoch"].tolist() == [1, 2, 3]
    assert df.notna().all().all()
    assert (df["images_per_second"] > 0).all() and (df["epoch_seconds"] > 0).all()
    wdir = paths.run_weights_dir("a")
    for name in ("best.pth", "last.pth", "config.json"):
        assert (wdir / name).is_file()
    for split in ("val", "test"):
        pred = pd.read_csv(paths.metrics_dir() / f"a_predictions_{split}.csv")
        assert tuple(pred.columns) == PREDICTION_COLUMNS
        assert len(pred) == 16 and pred["prob"].between(0, 1).all()
    ev = json.loads((paths.metrics_dir() / "a_eval.json").read_text())
    assert "operating_threshold" in ev and ev["synthetic_demo"] is True
    assert (paths.run_images_dir("a") / "roc.png").is_file()
    assert run_a.evaluation["roc_auc"]["value"] == ev["roc_auc"]["value"]
    # test predictions come from best.pth
    test_pred = pd.read_csv(paths.metrics_dir() / "a_predictions_test.csv")
    stats = read_stats(root / "data" / "Processed")
    model = build_model()
    model.load_state_dict(load_model_state(wdir / "best.pth"))
    test = load_split(root / "data" / "Processed", "test")
    np.testing.assert_allclose(test_pred["prob"], predict_proba(model, test.images, stats["mean"],
                                                                stats["std"]), atol=1e-6)


def test_evaluation_and_interpretation_agree_on_every_decision(root, run_a):
    """The test split's probabilities in metrics/a_predictions_test.csv are the ones the
    interpretation computes (float32 both), so both give every image the same decision at
    the operating threshold of a_eval.json."""
    from pneumocam.predict import load_run
    from pneumocam.split_maps import compute_split_maps

    pred = pd.read_csv(paths.metrics_dir() / "a_predictions_test.csv", dtype={"patientId": str})
    threshold = json.loads((paths.metrics_dir() / "a_eval.json").read_text())["operating_threshold"]
    run = load_run(paths.run_files("a")["best"], "cpu")
    assert run.threshold == pytest.approx(threshold, rel=0, abs=0)
    test = load_split(root / "data" / "Processed", "test")
    assert pred["patientId"].tolist() == test.manifest["patientId"].astype(str).tolist()
    maps = compute_split_maps(run, test.images, "cam", batch_size=5)
    np.testing.assert_allclose(pred["prob"], maps.probs, rtol=1e-5, atol=1e-6)
    assert ((pred["prob"] >= threshold) == (maps.probs >= threshold)).all()


def test_final_probabilities_ask_for_float32_without_tf32(monkeypatch):
    """The GPU path, pinned on CPU: no autocast dtype and no TF32 reach the final forward
    passes, and the backend flags are restored afterwards."""
    from pneumocam import train as train_module

    calls = []

    def spy(model, images, mean, std, device, batch_size=256, channels_last=True, amp_dtype=None):
        calls.append((device.type, amp_dtype, torch.backends.cudnn.allow_tf32,
                      torch.backends.cuda.matmul.allow_tf32))
        return torch.zeros(len(images))

    monkeypatch.setattr(train_module, "predict_logits", spy)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:  # (cuBLAS's flag is a property monkeypatch cannot restore)
        prob = train_module.final_probabilities(build_model(), np.zeros((3, 32, 32), np.uint8),
                                                0.5, 0.2, torch.device("cuda"))
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert calls == [("cuda", None, False, False)]
    assert prob.dtype == np.float64 and prob.tolist() == [0.5, 0.5, 0.5]
    assert train_module.training_amp_dtype(torch.device("cuda")) == torch.bfloat16
    assert train_module.training_amp_dtype(torch.device("cpu")) is None


def test_final_evaluation_is_float32_where_training_is_bf16(root, run_a, monkeypatch):
    """Training and per-epoch validation in bf16 (as on CUDA; forced here on CPU), the
    published probabilities in float32 all the same."""
    from pneumocam import train as train_module

    calls = []
    real = train_module.predict_logits

    def spy(*args, **kwargs):
        calls.append(kwargs.get("amp_dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_amp_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(train_module, "predict_logits", spy)
    cfg = {**BASE, "epochs": 1}
    train(TrainConfig(run_name="bf16", **cfg))
    assert calls == [torch.bfloat16, None, None]  # epoch 1's validation; final val and test
    stats = read_stats(root / "data" / "Processed")
    model = build_model()
    model.load_state_dict(load_model_state(paths.run_weights_dir("bf16") / "best.pth"))
    for split in ("val", "test"):
        images = load_split(root / "data" / "Processed", split).images
        pred = pd.read_csv(paths.metrics_dir() / f"bf16_predictions_{split}.csv")
        fp32 = predict_proba(model, images, stats["mean"], stats["std"])
        np.testing.assert_allclose(pred["prob"], fp32, rtol=0, atol=1e-6)
        bf16 = torch.sigmoid(real(model, torch.as_tensor(images), stats["mean"], stats["std"],
                                  torch.device("cpu"), amp_dtype=torch.bfloat16)).double().numpy()
        assert np.abs(bf16 - fp32).max() > 1e-4  # what the CSV would hold in bf16


def test_config_json_records_arguments_data_and_provenance(run_a):
    cfg = json.loads((paths.run_weights_dir("a") / "config.json").read_text())
    assert cfg["arguments"]["epochs"] == 3 and cfg["arguments"]["sampler"] == "balanced"
    assert cfg["settings"]["lr"] == 1e-3 and cfg["settings"]["schedule"] == "cosine"
    assert cfg["data_source"]["kind"] == "demo"
    assert set(cfg["stats"]) >= {"mean", "std", "size"} and cfg["stats"]["size"] == 32
    assert "torch" in cfg["provenance"]["versions"] and "git" in cfg["provenance"]
    assert cfg["model"]["cam_layer"] == "layer4"


def test_settings_block_is_the_frozen_settings_json_form(run_a):
    """config.json's and last.pth's ``settings`` read back into TrainSettings and write out the
    same keys, in the same order, with the same values; the settings cannot be changed."""
    cfg = json.loads((paths.run_weights_dir("a") / "config.json").read_text())
    settings = TrainSettings.from_json(cfg["settings"])
    assert settings.to_json() == cfg["settings"]
    assert list(settings.to_json()) == list(cfg["settings"])
    assert settings.to_json() == run_a.settings
    ckpt = load_checkpoint(paths.run_weights_dir("a") / "last.pth")
    assert TrainSettings.from_json(ckpt["settings"]).to_json() == ckpt["settings"]
    assert (settings.epochs, settings.seed, settings.pos_weight_setting) == (3, 3, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 4  # type: ignore[misc]


def test_epoch_rows_hold_their_own_epoch(root, run_a):
    """The row of epoch k holds epoch k's validation (recomputed from last.pth for the last
    epoch) and the learning rates used in epoch k's steps."""
    df = _csv("a")
    y, p = _val_probs(root, paths.run_weights_dir("a") / "last.pth")
    assert df["val_auc"].iloc[-1] == pytest.approx(safe_roc_auc(y, p), abs=1e-9)
    steps, total = 3, 9
    for k in (1, 2, 3):
        expected = np.mean([1e-3 * lr_factor(s, total, "cosine")
                            for s in range((k - 1) * steps, k * steps)])
        assert df.loc[k - 1, "lr"] == pytest.approx(expected, rel=1e-9)
    ckpt = load_checkpoint(paths.run_weights_dir("a") / "last.pth")
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3


def test_best_checkpoint_is_the_best_validation_auc(root, run_a):
    df = _csv("a")
    best_row = int(df["val_auc"].to_numpy().argmax())  # first maximum, like the trainer
    assert run_a.best_epoch == best_row + 1
    assert run_a.best_val_auc == df["val_auc"].max()
    y, p = _val_probs(root, paths.run_weights_dir("a") / "best.pth")
    assert safe_roc_auc(y, p) == pytest.approx(df["val_auc"].max(), abs=1e-9)
    ckpt = load_checkpoint(paths.run_weights_dir("a") / "last.pth")
    assert ckpt["best_epoch"] == run_a.best_epoch


def test_same_seed_same_metrics_on_cpu(root, run_a):
    train(TrainConfig(run_name="b", **BASE))
    a, b = _csv("a"), _csv("b")
    metric_cols = [c for c in CSV_COLUMNS if c not in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(a[metric_cols], b[metric_cols], check_exact=True)
    assert _state_equal(paths.run_weights_dir("a") / "best.pth",
                        paths.run_weights_dir("b") / "best.pth")


KILL_DRIVER = """
import os, signal, sys
from pneumocam.train import TrainConfig, train

def kill_after_first(epoch, row):
    if epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after epoch 1's checkpoint

train(TrainConfig(run_name="k", **{base}), on_epoch_end=kill_after_first)
"""


def test_resume_after_kill_matches_uninterrupted_run(root, run_a, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(KILL_DRIVER.format(base=repr(BASE)))
    env = {**os.environ, paths.ROOT_ENV_VAR: str(root)}
    proc = subprocess.run([sys.executable, str(driver)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _csv("k")["epoch"].tolist() == [1]
    assert load_checkpoint(paths.run_weights_dir("k") / "last.pth")["epoch"] == 1
    # A crash between writing epoch 2's row and its checkpoint leaves a row resume must drop.
    with (paths.metrics_dir() / "k.csv").open("a") as fh:
        fh.write("2" + ",0.5" * (len(CSV_COLUMNS) - 1) + "\n")
    # Without --resume or --overwrite the existing run is refused.
    with pytest.raises(ConfigError, match="--resume"):
        train(TrainConfig(run_name="k", **BASE))
    result = train(TrainConfig(run_name="k", resume=True, progress=False, n_boot=20))
    assert result.settings["epochs"] == 3 and result.settings["seed"] == 3  # from the checkpoint
    a, k = _csv("a"), _csv("k")
    assert k["epoch"].tolist() == [1, 2, 3]
    metric_cols = [c for c in CSV_COLUMNS if c not in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(a[metric_cols], k[metric_cols], check_exact=True)
    assert _state_equal(paths.run_weights_dir("a") / "best.pth",
                        paths.run_weights_dir("k") / "best.pth")
    assert _state_equal(paths.run_weights_dir("a") / "last.pth",
                        paths.run_weights_dir("k") / "last.pth")
    cfg = json.loads((paths.run_weights_dir("k") / "config.json").read_text())
    assert cfg["resumes"][0]["after_epoch"] == 1
    # Resuming a finished run trains nothing more and re-evaluates.
    again = train(TrainConfig(run_name="k", resume=True, progress=False, n_boot=20))
    assert len(again.history) == 3 and _csv("k")["epoch"].tolist() == [1, 2, 3]


class _Evil:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_object_checkpoint_is_refused_not_executed(root, run_a, tmp_path):
    marker = tmp_path / "pwned"
    wdir = paths.run_weights_dir("evil")
    wdir.mkdir(parents=True)
    torch.save({"format": "pneumocam-train-v1", "model": _Evil(marker)}, wdir / "last.pth")
    with pytest.raises(CheckpointError, match="refused"):
        train(TrainConfig(run_name="evil", resume=True, progress=False))
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(wdir / "last.pth")
    assert not marker.exists()


def test_mismatched_checkpoints_are_refused(root, run_a, tmp_path):
    # A checkpoint whose model does not fit (fc with two outputs) in an otherwise valid run.
    ckpt = load_checkpoint(paths.run_weights_dir("a") / "last.pth")
    ckpt["model"]["fc.weight"] = torch.zeros(2, 512)
    ckpt["model"]["fc.bias"] = torch.zeros(2)
    wdir = paths.run_weights_dir("bad")
    wdir.mkdir(parents=True)
    torch.save(ckpt, wdir / "last.pth")
    with pytest.raises(CheckpointError, match="does not fit"):
        train(TrainConfig(run_name="bad", resume=True, progress=False))
    # The same run resumed on data of another image size.
    other = tmp_path / "other"
    make_processed(other, size=40)
    shutil.copytree(paths.run_weights_dir("a"), other / "weights" / "a")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.ROOT_ENV_VAR, str(other))
        with pytest.raises(CheckpointError, match="image_size"):
            train(TrainConfig(run_name="a", resume=True, progress=False))
        with pytest.raises(CheckpointError, match="nothing to resume"):
            train(TrainConfig(run_name="never", resume=True, progress=False))


def test_clear_errors_for_missing_or_one_class_data(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path))
    with pytest.raises(ProcessedDataError, match="preprocess.py"):
        train(TrainConfig(data_dir=tmp_path / "missing", progress=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProcessedDataError, match="empty"):
        train(TrainConfig(data_dir=tmp_path / "empty", progress=False))
    one = make_processed(tmp_path / "one", n_train=8, n_val=4, n_test=4, one_class_split="val")
    with pytest.raises(ProcessedDataError, match="'val' split holds only class 0"):
        train(TrainConfig(data_dir=one, progress=False))
    assert not (tmp_path / "weights").exists()  # nothing written before the checks


def test_setting_errors(root, run_a):
    with pytest.raises(ConfigError, match="contradict"):
        train(TrainConfig(run_name="a", resume=True, overwrite=True, progress=False))
    with pytest.raises(ConfigError, match="pos-weight"):
        train(TrainConfig(run_name="pw", pos_weight="lots", progress=False))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            train(TrainConfig(run_name="gpu", device="cuda", progress=False))


def test_overwrite_and_pos_weight_auto_original_run(root, run_a):
    cfg = dict(sampler="original", epochs=1, batch_size=16, n_boot=20, progress=False,
               pos_weight="auto", limit=24)
    # A run that died before its first checkpoint left only config.json: nothing to protect.
    paths.run_weights_dir("posweight").mkdir(parents=True)
    (paths.run_weights_dir("posweight") / "config.json").write_text("{}")
    first = train(TrainConfig(run_name="posweight", **cfg))
    # limit=24 keeps the 1:3 class ratio: 6 positives, 18 negatives
    assert first.settings["n_train"] == 24
    assert first.settings["pos_weight"] == pytest.approx(18 / 6)
    (paths.metrics_dir() / "posweight.csv").write_text("stale\n")
    second = train(TrainConfig(run_name="posweight", overwrite=True, **cfg))
    assert _csv("posweight")["epoch"].tolist() == [1]
    assert second.history[0]["train_loss"] == pytest.approx(first.history[0]["train_loss"])


def test_arg_parser_defaults_and_mapping():
    parser = build_arg_parser("original")
    args = parser.parse_args([])
    assert args.run_name == "original" and args.epochs is None and args.device == "auto"
    cfg = config_from_args(parser.parse_args(["--epochs", "2", "--pos-weight", "auto",
                                              "--limit", "10", "--resume"]), "original")
    assert (cfg.sampler, cfg.epochs, cfg.pos_weight, cfg.limit, cfg.resume) == \
        ("original", 2, "auto", 10, True)
    for action in parser._actions:
        assert action.help, action.dest


@pytest.mark.slow
@pytest.mark.parametrize("script,run", [("train_balanced.py", "balanced"),
                                        ("train_original.py", "original")])
def test_scripts_smoke(tmp_path, script, run):
    make_processed(tmp_path)
    env = {**os.environ, paths.ROOT_ENV_VAR: str(tmp_path)}
    cmd = [sys.executable, str(REPO / "scripts" / script), "--epochs", "1", "--limit", "32",
           "--batch-size", "8", "--n-boot", "20", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"sampler={run}" in proc.stdout and "test ROC AUC" in proc.stdout
    assert (tmp_path / "weights" / run / "best.pth").is_file()
    assert (tmp_path / "metrics" / f"{run}_eval.json").is_file()
    assert len(pd.read_csv(tmp_path / "metrics" / f"{run}.csv")) == 1
    # Running again without --resume/--overwrite refuses, with the fix on stderr, exit 1.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path))
    make_processed(tmp_path)
    result = train(TrainConfig(run_name="gpu", device="cuda", epochs=2, batch_size=16,
                               n_boot=20, progress=False))
    assert result.settings["device"].startswith("cuda")
    assert math.isfinite(result.history[-1]["val_auc"])


@pytest.mark.parametrize("kind,device,epochs", [
    ("demo", "cpu", trainmod.DEMO_CPU_EPOCHS), ("demo", "cuda", trainmod.DEMO_EPOCHS),
    ("rsna", "cpu", trainmod.FULL_EPOCHS), ("rsna", "cuda", trainmod.FULL_EPOCHS),
])
def test_default_epochs_depend_on_data_and_device_and_say_why(kind: str, device: str,
                                                              epochs: int) -> None:
    from pneumocam.distributed import DistInfo
    stats = {"source": {"kind": kind, "path": "data/x"}}
    requested, notes = trainmod.resolve_requested(trainmod.TrainConfig(), stats, torch.device(device),
                                               DistInfo())
    assert requested.epochs == epochs
    why = next(n for n in notes if n.startswith("epochs="))
    assert why.startswith(f"epochs={epochs} (") and kind in why
    if kind == "demo" and device == "cpu":
        assert "10 minutes" in why
    # an explicit value is never replaced
    explicit, notes = trainmod.resolve_requested(trainmod.TrainConfig(epochs=5), stats,
                                              torch.device(device), DistInfo())
    assert explicit.epochs == 5 and not any(n.startswith("epochs=") for n in notes)


def test_interpretation_probabilities_are_computed_without_tf32(monkeypatch):
    """The interpretation's CAM pass (which also yields the probabilities it applies the
    evaluation's threshold to) runs with TF32 off, like final_probabilities; flags restored."""
    from pneumocam import split_maps
    from pneumocam.cam import compute_cams as real_compute_cams
    from pneumocam.predict import LoadedRun

    flags = []

    def spy(model, x, **kwargs):
        flags.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return real_compute_cams(model, x, **kwargs)

    monkeypatch.setattr(split_maps, "compute_cams", spy)
    run = LoadedRun.__new__(LoadedRun)
    object.__setattr__(run, "model", build_model().eval())
    object.__setattr__(run, "mean", 0.5)
    object.__setattr__(run, "std", 0.2)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        out = split_maps.compute_split_maps(run, np.zeros((3, 32, 32), np.uint8), "cam", 2)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert flags == [(False, False)] and out.probs.shape == (3,)
