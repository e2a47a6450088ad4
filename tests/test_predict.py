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
        assert f"threshold {threshold:.3f}" in lines[0]
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
