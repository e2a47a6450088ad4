"""Bad flags are refused before any work, run names stay inside the project, outputs are never
half-written, and Ctrl-C ends every script with one line and exit status 130."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, run_script, script_env

from pneumocam import atomic, cli, paths
from pneumocam import interpret as interpret_module
from pneumocam.compare import compare_runs
from pneumocam.errors import ConfigError, OutputFolderError, TrainingDivergedError
from pneumocam.interpret import InterpretConfig, interpret
from pneumocam.train import TrainConfig, train, validate_config

TINY = dict(epochs=1, batch_size=16, n_boot=20, progress=False)


@pytest.fixture()
def root(tiny_root):
    """A project root with a tiny processed dataset and no run yet."""
    return tiny_root


def _output_files(root: Path) -> list[Path]:
    return sorted(p for d in ("weights", "metrics", "images") if (root / d).exists()
                  for p in (root / d).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- run names

@pytest.mark.parametrize("name", ["", ".", "..", "../../escape_run", "/tmp/abs_run", "a/b",
                                  "with space", ".hidden", "-dash", "x" * 65, "ru<n>"])
def test_unsafe_run_names_are_refused(name):
    with pytest.raises(ConfigError, match="run name"):
        paths.check_run_name(name)
    with pytest.raises(ConfigError):
        paths.run_files(name)


@pytest.mark.parametrize("name", ["balanced", "original-lr3e-4", "run_1.2", "S0"])
def test_safe_run_names_pass(name):
    assert paths.run_files(name)["best"].parent.name == name


@pytest.mark.parametrize("name", ["", "../../escape_run", "/tmp/abs_run"])
def test_training_script_refuses_a_bad_run_name_before_writing(root, name):
    res = run_script("train_balanced.py", "--run-name", name, "--epochs", "1", root=root)
    assert res.returncode == 2 and "--run-name" in res.stderr and "Traceback" not in res.stderr
    assert _output_files(root) == []
    assert not (root.parent / "escape_run").exists()


def test_train_refuses_a_bad_run_name_in_the_config(root):
    with pytest.raises(ConfigError, match="run name"):
        train(TrainConfig(run_name="../x", **TINY))
    assert _output_files(root) == []


# --------------------------------------------------------------------------- flags first

@pytest.mark.parametrize("flag, value", [("--n-boot", "0"), ("--n-boot", "-5"), ("--lr", "inf"),
                                         ("--lr", "0"), ("--epochs", "0"), ("--seed", "-1"),
                                         ("--batch-size", "-2"), ("--weight-decay", "nan"),
                                         ("--pos-weight", "inf"), ("--pos-weight", "-1"),
                                         ("--limit", "1")])
def test_bad_training_flags_fail_before_any_work(tmp_path, flag, value):
    # No processed data here: a bad flag must be refused before the demo data is prepared.
    res = run_script("train_original.py", flag, value, "--no-progress", root=tmp_path)
    assert res.returncode == 2, res.stdout[-500:] + res.stderr[-1500:]
    assert flag in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists() and _output_files(tmp_path) == []


@pytest.mark.parametrize("field, value", [("n_boot", 0), ("lr", float("nan")), ("epochs", 0),
                                          ("pos_weight", "inf"), ("weight_decay", -1.0),
                                          ("seed", -3), ("limit", 1)])
def test_validate_config_refuses_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')}"):
        validate_config(TrainConfig(**{field: value}))


def test_a_diverging_run_stops_at_once_with_a_hint(root):
    with pytest.raises(TrainingDivergedError, match=r"epoch 1.*--lr"):
        train(TrainConfig(run_name="hot", lr=1e6, **{**TINY, "epochs": 3}))
    files = paths.run_files("hot")
    assert not files["best"].exists() and not files["eval"].exists()


def test_an_unwritable_output_folder_is_found_before_training(root):
    (root / "images").write_text("a file where the figures folder should be")
    epochs_seen = []
    with pytest.raises(OutputFolderError, match="images"):
        train(TrainConfig(run_name="r", **TINY), on_epoch_end=lambda e, row: epochs_seen.append(e))
    assert epochs_seen == [] and not paths.run_files("r")["last"].exists()


def test_ensure_writable_dir_names_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        paths.ensure_writable_dir(blocker)
    with pytest.raises(OutputFolderError, match="is a file"):
        paths.ensure_writable_dir(blocker / "sub")
    assert paths.ensure_writable_dir(tmp_path / "new" / "deep").is_dir()


def test_compare_refuses_non_positive_bootstrap_counts(root):
    with pytest.raises(ConfigError, match="--n-boot"):
        compare_runs(["a", "b"], n_boot=0)
    for value in ("0", "-1"):
        res = run_script("compare.py", "--n-boot", value, root=root)
        assert res.returncode == 2 and "--n-boot" in res.stderr and "Traceback" not in res.stderr
    res = run_script("compare.py", "--runs", "original", "../x", root=root)
    assert res.returncode == 2 and "run name" in res.stderr


# --------------------------------------------------------------------------- atomic outputs

def test_atomic_path_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "maps.npy"
    np.save(target, np.arange(4, dtype=np.float32))
    with pytest.raises(KeyboardInterrupt), atomic.atomic_path(target) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(4,))
        arr[:2] = 9
        arr.flush()
        raise KeyboardInterrupt
    np.testing.assert_array_equal(np.load(target), np.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["maps.npy"]
    with atomic.atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ones(3, np.float32))  # a path not ending in .npy would get one added
    np.testing.assert_array_equal(np.load(target), np.ones(3))


def test_write_frame_csv_is_complete_or_absent(tmp_path):
    path = atomic.write_frame_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}), index=False)
    assert path.read_text() == "a\n1\n2\n"


@pytest.fixture()
def trained(root):
    train(TrainConfig(run_name="tiny", **TINY))
    return root


def test_interrupted_save_maps_keeps_the_previous_maps(trained, monkeypatch):
    config = InterpretConfig(weights=paths.run_files("tiny")["best"], save_maps=True, n=2,
                             n_grid=1, n_boot=10, device="cpu", submission=False)
    interpret(config)
    maps_file = interpret_module.output_paths("tiny")["maps"]
    before = np.load(maps_file)
    assert before.any()

    real = interpret_module.compute_split_maps

    def interrupted(*args, **kwargs):
        if len(args) > 5 and args[5] is not None or kwargs.get("raw_out") is not None:
            out = args[5] if len(args) > 5 else kwargs["raw_out"]
            out[:] = 0  # what a killed memmap writer leaves behind
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(interpret_module, "compute_split_maps", interrupted)
    with pytest.raises(KeyboardInterrupt):
        interpret(config)
    np.testing.assert_array_equal(np.load(maps_file), before)
    assert not list(maps_file.parent.glob(".*.tmp"))


# --------------------------------------------------------------------------- Ctrl-C

def test_run_main_turns_ctrl_c_into_one_line_and_130(capsys):
    def main() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(main, resume_hint="rerun to resume")
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted; rerun to resume."


def test_ctrl_c_during_training_exits_130_without_traceback_or_partial_rows(root):
    env = script_env(root)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train_balanced.py"), "--epochs", "200",
         "--batch-size", "16", "--no-progress", "--n-boot", "20"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C in a terminal: SIGINT handled, even when this test runs as a background job
        # (whose children inherit SIGINT ignored, and Python then installs no handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:  # wait until an epoch has finished and the next one runs
            if "[train] epoch 2/" in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted; rerun with --resume" in err
    csv_text = paths.run_files("balanced")["csv"].read_text()
    assert csv_text.endswith("\n")
    rows = pd.read_csv(paths.run_files("balanced")["csv"])
    assert len(rows) >= 2 and rows.notna().all().all()


def test_weights_outside_a_run_folder_fall_back_to_the_default_threshold(root, capsys):
    from pneumocam.predict import DEFAULT_THRESHOLD, operating_threshold

    value, source = operating_threshold("my weights", Path("/tmp/my weights/best.pth"))
    assert value == DEFAULT_THRESHOLD and "no run named" in source
    assert "not a run name" in capsys.readouterr().err


def test_a_failed_checkpoint_write_is_one_clear_error_and_keeps_the_old_file(tmp_path,
                                                                              monkeypatch):
    import torch

    from pneumocam import checkpoint
    from pneumocam.errors import CheckpointError

    target = checkpoint.save_checkpoint({"w": torch.ones(2)}, tmp_path / "last.pth")
    before = target.read_bytes()

    def disk_full(obj, fh):
        fh.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"last.pth: could not be written .*unexpected pos"
                                              r".*free space"):
        checkpoint.save_checkpoint({"w": torch.zeros(2)}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_n_grid_zero_writes_no_grids_and_removes_earlier_ones(trained):
    config = InterpretConfig(weights=paths.run_files("tiny")["best"], n=1, n_grid=1, n_boot=10,
                             device="cpu", submission=False)
    grids = [interpret_module.output_paths("tiny")[f"grid_{c}"] for c in ("tp", "fp", "fn", "tn")]
    interpret(config)
    assert any(g.is_file() for g in grids)
    config.n_grid = 0
    result = interpret(config)
    assert not any(g.is_file() for g in grids)
    assert not any(k.startswith("grid_") for k in result["outputs"])


def test_predict_refuses_normalising_with_another_split(trained, tmp_path):
    import json
    import shutil

    import cv2

    from pneumocam.errors import DataSourceError
    from pneumocam.predict import PredictConfig, predict

    other = tmp_path / "other_split"
    shutil.copytree(trained / "data" / "Processed", other)
    manifest = pd.read_csv(other / "manifest.csv", dtype=str, keep_default_na=False)
    first_train, first_test = (manifest.index[manifest.split == s][0] for s in ("train", "test"))
    manifest.loc[[first_train, first_test], "split"] = ["test", "train"]  # two patients swap
    manifest.to_csv(other / "manifest.csv", index=False)
    stats = json.loads((other / "stats.json").read_text())
    stats.pop("split_fingerprint", None)  # recomputed from the manifest
    (other / "stats.json").write_text(json.dumps(stats))
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    with pytest.raises(DataSourceError, match="split"):
        predict(PredictConfig(weights=paths.run_files("tiny")["best"], files=[image],
                              data_dir=other, out_dir=tmp_path / "out", device="cpu"))
    results = predict(PredictConfig(weights=paths.run_files("tiny")["best"], files=[image],
                                    out_dir=tmp_path / "out", device="cpu"))
    assert results[0].ok


def test_one_exit_code_rule_for_every_error(capsys):
    from pneumocam.errors import CheckpointError, DataSourceError

    assert cli.report_error(ConfigError("--x 0: bad")) == cli.EXIT_USAGE == 2
    for exc in (DataSourceError("d"), CheckpointError("c")):
        assert cli.report_error(exc) == cli.EXIT_FAILED == 1
    assert capsys.readouterr().err.splitlines() == ["error: --x 0: bad", "error: d", "error: c"]
    for script in sorted((REPO / "scripts").glob("*.py")):  # every script follows it
        text = script.read_text()
        assert "cli.run_main(" in text and "sys.exit(" not in text, script.name
        assert "return 2" not in text and 'print(f"error: {exc}"' not in text, script.name


def test_writable_folder_problem_names_what_is_in_the_way(tmp_path, monkeypatch):
    """The one probe behind every output-folder check: a file, a broken link, no permission."""
    import tempfile

    blocker = tmp_path / "out"
    blocker.write_text("x")
    for folder in (blocker, blocker / "sub" / "deep"):
        problem = paths.writable_folder_problem(folder)
        assert (problem.kind, problem.blocker) == ("file", blocker)
        assert problem.reason == f"{blocker} is a file, not a folder"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    problem = paths.writable_folder_problem(link / "sub")
    assert (problem.kind, problem.blocker) == ("broken_symlink", link)
    with pytest.raises(OutputFolderError, match="broken symlink"):
        paths.ensure_writable_dir(link)
    assert paths.writable_folder_problem(tmp_path / "new" / "deep") is None
    assert (tmp_path / "new" / "deep").is_dir() and not any((tmp_path / "new" / "deep").iterdir())

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    problem = paths.writable_folder_problem(tmp_path / "ro")
    assert (problem.kind, problem.reason) == ("unwritable", "Read-only file system")
    with pytest.raises(OutputFolderError, match=r"not writable \(Read-only file system\)"):
        paths.ensure_writable_dir(tmp_path / "ro")


def test_setting_checks_name_the_flag_and_the_bound():
    """cli.check_choice / cli.check_at_least: the stages' shared ConfigError wording."""
    from types import SimpleNamespace

    cli.check_choice("split", "val", ("train", "val", "test"))
    with pytest.raises(ConfigError) as err:
        cli.check_choice("split", "dev", ("train", "val", "test"))
    assert str(err.value) == "--split 'dev': expected one of ('train', 'val', 'test')."
    config = SimpleNamespace(batch_size=4, n_boot=0, limit=None, n_grid=-1)
    cli.check_at_least(config, 1, "batch_size", "limit")  # None: an unset optional passes
    with pytest.raises(ConfigError, match=r"^--n-boot must be >= 1\.$"):
        cli.check_at_least(config, 1, "batch_size", "n_boot")
    with pytest.raises(ConfigError, match=r"^--n-grid must be >= 0\.$"):
        cli.check_at_least(config, 0, "n_grid")


def test_checkpoint_paths_that_are_not_files_say_what_they_are(tmp_path):
    from pneumocam.checkpoint import load_checkpoint
    from pneumocam.errors import CheckpointError

    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.pth"
    dangling.symlink_to(tmp_path / "gone.pth")
    cases = {loop: "symlink loop", dangling: "broken symlink", tmp_path: "is a folder",
             tmp_path / "missing.pth": "not found; check the path. Train a model first"}
    for path, expected in cases.items():
        with pytest.raises(CheckpointError, match=expected):
            load_checkpoint(path)
