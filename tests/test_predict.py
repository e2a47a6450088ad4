"""scripts/predict.py and pneumocam.predict on a real DICOM, a PNG and a file that is neither."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_interpret import REPO, RG1, SIZE, build_root

from pneumocam import paths
from pneumocam.errors import CheckpointError, ConfigError
from pneumocam.overlays import format_probability
from pneumocam.predict import PredictConfig, load_run, predict, resolve_device


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    # A random model (0 training steps): these tests are about the plumbing, not the accuracy.
    weights = build_root(root, ("balanced",), steps=0)["balanced"]
    return root, weights


@pytest.fixture
def inputs(tmp_path):
    from pydicom.data import get_testdata_file

    dicom = Path(get_testdata_file(RG1))
    png = tmp_path / "chest.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (48, 40), dtype=np.uint8)).save(png)
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not an image\n")
    return dicom, png, bad


def test_predict_reads_dicom_and_png_and_reports_bad_files(trained, inputs, tmp_path, monkeypatch):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    dicom, png, bad = inputs
    out, err = io.StringIO(), io.StringIO()
    results = predict(PredictConfig(weights=weights, files=[dicom, bad, png], device="cpu",
                                    out_dir=tmp_path / "pred", csv=tmp_path / "pred.csv"),
                      out=out, err=err)
    assert [r.ok for r in results] == [True, False, True]
    assert str(bad) in err.getvalue() and "error" in err.getvalue()
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 2 and str(dicom) in lines[0] and str(png) in lines[1]
    threshold = json.loads((root / "metrics" / "balanced_eval.json").read_text())["operating_threshold"]
    for r in (results[0], results[2]):
        assert 0 <= r.prob <= 1 and r.positive == (r.prob >= threshold)
        assert f"threshold {format_probability(threshold)})" in lines[0]
    assert (tmp_path / "pred" / "RG1_UNCR_cam.png").is_file()
    assert (tmp_path / "pred" / "chest_cam.png").is_file()
    table = pd.read_csv(tmp_path / "pred.csv")
    assert table["file"].tolist() == [str(dicom), str(bad), str(png)]
    assert table["error"].notna().tolist() == [False, True, False]
    saved = json.loads((tmp_path / "pred" / "predict_config.json").read_text())
    assert saved["normalisation"]["size"] == SIZE and saved["run"] == "balanced"


def test_predict_matches_the_model_on_processed_arrays(trained, tmp_path, monkeypatch):
    """A PNG of a processed array gets the probability the model gives that array directly."""
    import torch

    from pneumocam import processed
    from pneumocam.predict import normalize_images

    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    split = processed.load_split(root / "data" / "Processed", "test", limit=2)
    files = []
    for i, arr in enumerate(split.images):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(arr).save(files[-1])
    results = predict(PredictConfig(weights=weights, files=files, device="cpu",
                                    out_dir=tmp_path / "o"), out=io.StringIO())
    run = load_run(weights, "cpu")
    with torch.no_grad():
        direct = torch.sigmoid(run.model(normalize_images(split.images, run.mean, run.std))[:, 0])
    assert [r.prob for r in results] == pytest.approx(direct.numpy().tolist(), abs=1e-5)


def test_run_errors(trained, tmp_path):
    _, weights = trained
    with pytest.raises(CheckpointError, match="not found"):
        load_run(tmp_path / "x" / "best.pth", "cpu")
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")


def _script_main(name: str):
    """``main`` of scripts/<name>, loaded in-process (the scripts are not a package)."""
    import runpy

    return runpy.run_path(str(REPO / "scripts" / name), run_name="not_main")["main"]


def test_cli_processes_the_rest_and_exits_non_zero(trained, inputs, tmp_path):
    root, weights = trained
    dicom, png, bad = inputs
    env = {**os.environ, paths.ROOT_ENV_VAR: str(root)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "predict.py"), "--weights", str(weights),
         "--device", "cpu", str(bad), str(dicom), str(png), "--out-dir", str(tmp_path / "cli")],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert "SYNTHETIC DEMO" in proc.stderr  # the fixture run was trained on demo data
    assert proc.stdout.count("p(pneumonia)") == 2
    assert sorted(p.name for p in (tmp_path / "cli").glob("*_cam.png")) == \
        ["RG1_UNCR_cam.png", "chest_cam.png"]


def test_cli_main_exit_codes(trained, inputs, tmp_path, monkeypatch, capsys):
    root, weights = trained
    _, png, _ = inputs
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    main = _script_main("predict.py")
    assert main(["--weights", str(weights), "--device", "cpu", str(png),
                 "--out-dir", str(tmp_path / "o")]) == 0
    assert "p(pneumonia)" in capsys.readouterr().out
    assert main(["--weights", str(tmp_path / "none.pth"), str(png)]) != 0
    assert "not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input (issue 8)


def _variant_run(root: Path, weights: Path, name: str, edit) -> Path:
    """A copy of the fixture run under ``weights/<name>/`` with ``edit(state)`` applied."""
    import shutil

    from pneumocam.checkpoint import load_model_state, save_checkpoint

    state = load_model_state(weights)
    edit(state)
    target = root / "weights" / name / "best.pth"
    save_checkpoint(state, target)
    shutil.copy(weights.parent / "config.json", target.parent / "config.json")
    return target


def _pngs(folder: Path, relpaths: list[str]) -> list[Path]:
    """Distinct random PNGs at ``folder/<relpath>`` (different pixels, so different overlays)."""
    files = []
    for i, rel in enumerate(relpaths):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def test_overlay_names_are_distinct_and_deterministic():
    from pneumocam.predict import overlay_names

    files = [Path(p) for p in ("p1/IM-0001.dcm", "p2/IM-0001.dcm", "p3/IM-0001.dcm", "x/a.dcm",
                               "x/a.png", "solo.dcm", "q/s.dcm", "q/s.dcm")]
    names = overlay_names(files)
    assert names == ["p1_IM-0001_dcm_cam.png", "p2_IM-0001_dcm_cam.png", "p3_IM-0001_dcm_cam.png",
                     "x_a_dcm_cam.png", "x_a_png_cam.png", "solo_cam.png", "q_s_dcm_cam.png",
                     "q_s_dcm_2_cam.png"]
    assert overlay_names(files) == names
    # a qualified name never takes the name another input gets as it is
    assert overlay_names([Path("p/a.png"), Path("q/a.png"), Path("p_a_png.png")]) == \
        ["p_a_png_2_cam.png", "q_a_png_cam.png", "p_a_png_cam.png"]


def test_every_input_gets_its_own_overlay(trained, tmp_path, monkeypatch):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    files = _pngs(tmp_path, ["p1/IM-0001.png", "p2/IM-0001.png", "p3/IM-0001.png"])
    out = io.StringIO()
    results = predict(PredictConfig(weights=weights, files=files, device="cpu",
                                    out_dir=tmp_path / "o"), out=out, err=io.StringIO())
    overlays = sorted((tmp_path / "o").glob("*_cam.png"))
    assert len(overlays) == 3 and len({p.read_bytes() for p in overlays}) == 3
    assert [Path(r.overlay).name for r in results] == \
        ["p1_IM-0001_png_cam.png", "p2_IM-0001_png_cam.png", "p3_IM-0001_png_cam.png"]
    for line, result in zip(out.getvalue().splitlines(), results, strict=True):
        assert line.startswith(result.file) and line.endswith(f"overlay {result.overlay}")


def test_non_finite_weights_are_refused_up_front(trained, tmp_path, monkeypatch):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    nan = _variant_run(root, weights, "diverged", lambda s: s["layer3.0.conv1.weight"].fill_(float("nan")))
    png = _pngs(tmp_path, ["a.png"])
    with pytest.raises(CheckpointError, match=r"holds NaN/inf values.*retrain with a lower --lr"):
        predict(PredictConfig(weights=nan, files=png, device="cpu", out_dir=tmp_path / "o"),
                out=io.StringIO(), err=io.StringIO())
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.png"))


def test_non_finite_logit_is_an_error_for_that_file(trained, tmp_path, monkeypatch, capsys):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    # Finite weights whose logit overflows: every positive feature times 3e38 sums to inf.
    huge = _variant_run(root, weights, "overflow", lambda s: s["fc.weight"].fill_(3e38))
    files = _pngs(tmp_path, ["a.png", "b.png"])
    err = io.StringIO()
    results = predict(PredictConfig(weights=huge, files=files, device="cpu", out_dir=tmp_path / "o",
                                    csv=tmp_path / "r.csv"), out=io.StringIO(), err=err)
    assert [r.ok for r in results] == [False, False]
    assert all("not finite" in r.error and r.prob is None for r in results)
    assert err.getvalue().count("not finite") == 2
    assert pd.read_csv(tmp_path / "r.csv")["error"].str.contains("not finite").all()
    main = _script_main("predict.py")
    assert main(["--weights", str(huge), "--device", "cpu", str(files[0]),
                 "--out-dir", str(tmp_path / "o2")]) == 1
    captured = capsys.readouterr()
    assert "p(pneumonia)" not in captured.out and "not finite" in captured.err


def test_output_paths_are_checked_before_any_work(trained, tmp_path, monkeypatch):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    png = _pngs(tmp_path, ["a.png"])
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    quiet = {"out": io.StringIO(), "err": io.StringIO()}
    with pytest.raises(ConfigError, match=r"--out-dir .*taken.* is a file, not a folder"):
        predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=a_file), **quiet)
    with pytest.raises(ConfigError, match=r"--out-dir .*is a file, not a folder"):
        predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=a_file / "sub"),
                **quiet)
    folder = tmp_path / "csvdir"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"--csv .*csvdir: is a folder; give a file name"):
        predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=tmp_path / "o",
                              csv=folder), **quiet)
    assert not list((tmp_path / "o").glob("*_cam.png"))  # nothing was done first
    with pytest.raises(ConfigError, match="--batch-size 0"):
        predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=tmp_path / "o",
                              batch_size=0), **quiet)


def test_unwritable_output_folder_is_a_one_line_error(trained, tmp_path, monkeypatch):
    """A read-only file system (simulated: root ignores permission bits) names the flag and fix."""
    import tempfile

    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    png = _pngs(tmp_path, ["a.png"])

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(ConfigError, match=r"--out-dir .*: cannot write there \(Read-only file "
                                          r"system\); choose a writable folder"):
        predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=tmp_path / "o"),
                out=io.StringIO(), err=io.StringIO())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(trained, tmp_path, monkeypatch):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    png = _pngs(tmp_path, ["a.png"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="--csv .*cannot write there"):
            predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=tmp_path / "o",
                                  csv=locked / "r.csv"), out=io.StringIO(), err=io.StringIO())
    finally:
        locked.chmod(0o755)


def test_cli_bad_outputs_and_batch_size(trained, tmp_path, monkeypatch, capsys):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    png = _pngs(tmp_path, ["a.png"])
    main = _script_main("predict.py")
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["--weights", str(weights), str(png[0]), "--out-dir", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out-dir") and "Traceback" not in err
    assert main(["--weights", str(weights), str(png[0]), "--out-dir", str(tmp_path / "o"),
                 "--csv", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    for bad in ("0", "-3"):
        with pytest.raises(SystemExit) as info:
            main(["--weights", str(weights), str(png[0]), "--batch-size", bad])
        assert info.value.code == 2
        assert "--batch-size" in capsys.readouterr().err


def test_csv_is_written_atomically(trained, tmp_path, monkeypatch):
    """A failing CSV write leaves the previous table whole (no half-written file)."""
    import csv as csv_module

    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    png = _pngs(tmp_path, ["a.png"])
    table = tmp_path / "r.csv"
    table.write_text("old table\n")

    class Broken(csv_module.DictWriter):
        def writerows(self, rows):
            self.writer.writerow(["half"])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv_module, "DictWriter", Broken)
    with pytest.raises(OSError):
        predict(PredictConfig(weights=weights, files=png, device="cpu", out_dir=tmp_path / "o",
                              csv=table), out=io.StringIO(), err=io.StringIO())
    assert table.read_text() == "old table\n"
    assert sorted(p.name for p in tmp_path.glob(".*")) == []


def test_read_radiograph_says_what_the_path_is(tmp_path):
    from pneumocam.errors import DicomReadError
    from pneumocam.predict import read_radiograph

    loop = tmp_path / "loop.dcm"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.dcm"
    dangling.symlink_to(tmp_path / "gone.dcm")
    cases = {tmp_path: "is a folder, not a file", loop: "symlink loop",
             tmp_path / "missing.dcm": "not found", dangling: "broken symlink"}
    for path, reason in cases.items():
        with pytest.raises(DicomReadError) as info:
            read_radiograph(path, SIZE)
        assert str(info.value).startswith(f"{path}: {reason}"), str(info.value)
        assert "file not found" not in str(info.value)


def test_folder_input_is_a_per_file_error(trained, inputs, tmp_path, monkeypatch):
    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    _, png, _ = inputs
    err = io.StringIO()
    results = predict(PredictConfig(weights=weights, files=[tmp_path, png], device="cpu",
                                    out_dir=tmp_path / "o"), out=io.StringIO(), err=err)
    assert [r.ok for r in results] == [False, True]
    assert "is a folder, not a file" in err.getvalue()


def test_small_probabilities_and_thresholds_stay_readable():
    from pneumocam.overlays import overlay_title
    from pneumocam.predict import FilePrediction, format_prediction

    line = format_prediction(FilePrediction(file="a.dcm", prob=1.5e-06, positive=False), 3.2e-05)
    assert "p(pneumonia) = 1.5e-06" in line and "threshold 3.2e-05" in line
    assert "0.000" not in line
    assert format_prediction(FilePrediction(file="a.dcm", prob=0.83124, positive=True), 0.42) == \
        "a.dcm: p(pneumonia) = 0.8312 -> PNEUMONIA (threshold 0.42)"
    assert "at 3.2e-05" in overlay_title(None, 1.5e-06, None, 3.2e-05)


def test_last_pth_warns_that_the_threshold_is_best_pth_s(trained, tmp_path, monkeypatch, capsys):
    from pneumocam.checkpoint import load_model_state, save_checkpoint

    root, weights = trained
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    last = weights.parent / "last.pth"
    save_checkpoint({"model": load_model_state(weights), "epoch": 0}, last)
    run = load_run(last, "cpu")
    err = capsys.readouterr().err
    assert "tuned" in err and "best.pth" in err and str(last) in err
    assert "tuned for best.pth" in run.threshold_source and "last.pth" in run.threshold_source
    load_run(weights, "cpu")
    assert "tuned" not in capsys.readouterr().err
