"""The interpretation stage on a tiny processed dataset and a briefly trained model.

The fixture builders here (:func:`build_root`) are shared with ``test_predict.py`` and
``test_notebook_03.py``: a 48-px processed dataset whose positives carry a bright blob inside
their box, a ResNet-18 trained a few steps, its ``config.json`` and eval JSON, all under a
temporary ``PNEUMOCAM_ROOT``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO

from pneumocam import paths, processed
from pneumocam.checkpoint import save_checkpoint
from pneumocam.data import prepare_batch
from pneumocam.model import build_model

SIZE = 48  # layer4 is 2 x 2 at 48 px: the smallest input whose CAM is not one constant cell
COUNTS = {"train": 16, "val": 10, "test": 10}
RG1 = "RG1_UNCR.dcm"  # pydicom-data test file; exact name only (a wildcard would try to download)


# --------------------------------------------------------------------------- fixture builders


def make_processed(root: Path, size: int = SIZE, counts: dict[str, int] = COUNTS,
                   kind: str = "demo", test_dicoms: bool = False, seed: int = 0) -> Path:
    """A processed folder under ``root/data/Processed``: uint8 (size, size) arrays, half of each
    split positive with one box holding a bright blob, manifest.csv and stats.json.

    ``test_dicoms`` puts a copy of pydicom's RG1_UNCR.dcm in the source's stage_2_test_images/.
    """
    rng = np.random.default_rng(seed)
    out = root / "data" / "Processed"
    source_dir = root / "data" / "demo"
    source_dir.mkdir(parents=True, exist_ok=True)
    rows, train_images = [], []
    for split in processed.SPLITS:
        for i in range(counts[split]):
            label = i % 2
            pid = f"{split}-{i:03d}"
            img = rng.normal(70, 10, (size, size))
            boxes = []
            if label:
                w, h = size // 4 + int(rng.integers(0, 3)), size // 3
                x, y = int(rng.integers(1, size - w - 1)), int(rng.integers(1, size - h - 1))
                img[y:y + h, x:x + w] += 130
                boxes = [[x, y, w, h]]
            arr = np.clip(img, 0, 255).astype(np.uint8)
            rel = processed.array_relpath(split, label, pid)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / rel, arr)
            if split == "train":
                train_images.append(arr)
            rows.append({"patientId": pid, "split": split, "label": label,
                         "class": "Lung Opacity" if label else "Normal",
                         "view_position": "PA" if i % 3 else "AP", "sex": "F", "age": 40,
                         "boxes": json.dumps(boxes), "source_file": f"{pid}.dcm",
                         "array_file": rel})
    pd.DataFrame(rows, columns=processed.MANIFEST_COLUMNS).to_csv(
        out / processed.MANIFEST_NAME, index=False)
    unit = np.stack(train_images).astype(np.float64) / 255.0
    stats = {"mean": float(unit.mean()), "std": float(unit.std()), "size": size,
             "source": {"kind": kind, "path": str(source_dir)},
             "counts": {s: {"0": counts[s] - counts[s] // 2, "1": counts[s] // 2}
                        for s in processed.SPLITS}}
    (out / processed.STATS_NAME).write_text(json.dumps(stats))
    if test_dicoms:
        from pydicom.data import get_testdata_file

        (source_dir / "stage_2_test_images").mkdir(exist_ok=True)
        shutil.copy(get_testdata_file(RG1), source_dir / "stage_2_test_images" / "rg1-test.dcm")
    return out


def train_tiny_model(processed_dir: Path, steps: int = 3, seed: int = 0) -> torch.nn.Module:
    """A ResNet-18 trained ``steps`` full-batch Adam steps on the train split (0: random)."""
    torch.manual_seed(seed)
    data = processed.load_split(processed_dir, "train")
    stats = processed.read_stats(processed_dir)
    x = prepare_batch(torch.from_numpy(data.images), stats["mean"], stats["std"])
    y = torch.from_numpy(data.labels.copy()).float()
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        loss.backward()
        opt.step()
    return model.eval()


def save_run(root: Path, run: str, model: torch.nn.Module, processed_dir: Path,
             threshold: float | None = 0.5, config: bool = True) -> Path:
    """``weights/<run>/best.pth`` (+ config.json, + metrics/<run>_eval.json unless threshold None)."""
    weights = root / "weights" / run / "best.pth"
    save_checkpoint(model.state_dict(), weights)
    stats = processed.read_stats(processed_dir)
    if config:
        (weights.parent / "config.json").write_text(json.dumps({
            "data_dir": str(processed_dir), "run_name": run,
            "stats": {"mean": stats["mean"], "std": stats["std"], "size": stats["size"]},
            "data_source": stats["source"]}))
    if threshold is not None:
        (root / "metrics").mkdir(parents=True, exist_ok=True)
        (root / "metrics" / f"{run}_eval.json").write_text(json.dumps(
            {"run": run, "operating_threshold": threshold, "data_source": stats["source"]}))
    return weights


def build_root(root: Path, runs: Sequence[str] = ("balanced",), test_dicoms: bool = False,
               steps: int = 3) -> dict[str, Path]:
    """Processed data + one trained run per name (different seeds) under ``root``.

    Each run's threshold is the median training probability, so every confusion cell is filled.
    Returns ``{run: weights path}``.
    """
    processed_dir = make_processed(root, test_dicoms=test_dicoms)
    weights = {}
    for k, run in enumerate(runs):
        model = train_tiny_model(processed_dir, steps=steps, seed=k)
        data = processed.load_split(processed_dir, "train")
        stats = processed.read_stats(processed_dir)
        with torch.no_grad():
            x = prepare_batch(torch.from_numpy(data.images), stats["mean"], stats["std"])
            probs = torch.sigmoid(model(x)[:, 0]).numpy()
        weights[run] = save_run(root, run, model, processed_dir, threshold=float(np.median(probs)))
    return weights


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One root shared by this module's tests: data (+ a test DICOM) and the run 'balanced'."""
    root = tmp_path_factory.mktemp("study")
    weights = build_root(root, ("balanced",), test_dicoms=True)
    return root, weights["balanced"]


@pytest.fixture
def at_root(study, monkeypatch):
    root, weights = study
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    return root, weights


def _config(weights, **kw):
    from pneumocam.interpret import InterpretConfig

    base = {"weights": weights, "n": 4, "n_grid": 3, "batch_size": 8, "device": "cpu",
            "n_boot": 50, "sanity_images": 4}
    return InterpretConfig(**{**base, **kw})


# --------------------------------------------------------------------------- tests


def test_interpret_writes_every_output(at_root):
    from pneumocam.interpret import LOCALIZATION_CSV_COLUMNS, interpret

    root, weights = at_root
    result = interpret(_config(weights, save_maps=True))
    n_test, n_pos = COUNTS["test"], COUNTS["test"] // 2

    maps = np.load(root / "metrics" / "balanced_maps.npy")
    assert maps.dtype == np.float32 and maps.shape == (n_test, SIZE, SIZE)
    assert np.isfinite(maps).all() and maps.std() > 0
    index = pd.read_csv(root / "metrics" / "balanced_maps_index.csv", dtype={"patientId": str})
    assert list(index.columns) == ["patientId", "label", "probability"]
    manifest = processed.read_manifest(root / "data" / "Processed")
    assert index["patientId"].tolist() == manifest.loc[manifest.split == "test", "patientId"].tolist()
    assert index["probability"].between(0, 1).all()

    report = json.loads((root / "metrics" / "balanced_localization.json").read_text())
    for key in ("pointing_game", "mass_in_boxes", "iou", "iou_threshold", "n_images", "baselines",
                "method", "split", "detection", "sanity_check", "data_source", "provenance",
                "config"):
        assert key in report, key
    assert "per_image" not in report
    assert report["n_images"] == n_pos and report["n_split_images"] == n_test
    assert report["method"] == "cam" and report["split"] == "test"
    assert report["data_source"]["kind"] == "demo" and report["synthetic_demo"] is True
    lo, hi = report["pointing_game"]["ci95"]
    assert lo <= report["pointing_game"]["value"] <= hi
    assert set(report["baselines"]) >= {"fixed_point", "mean_box_prior", "uniform_random"}
    assert 0 <= report["detection"]["rsna_metric"] <= 1
    assert report["detection"]["box_threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert isinstance(report["sanity_check"]["passed"], bool)
    assert report["classification"]["operating_threshold"] == pytest.approx(
        json.loads((root / "metrics" / "balanced_eval.json").read_text())["operating_threshold"])

    table = pd.read_csv(root / "metrics" / "balanced_localization.csv", dtype={"patientId": str})
    assert tuple(table.columns) == LOCALIZATION_CSV_COLUMNS
    assert len(table) == n_pos and (table["label"] == 1).all()
    assert set(table["pointing_hit"]) <= {0, 1}
    assert table["mass_in_boxes"].between(0, 1).all() and table["iou"].between(0, 1).all()
    assert table["pointing_hit"].mean() == pytest.approx(report["pointing_game"]["value"])
    # the peak columns are the pointing game's peak: the centre of a 2x2 feature map's strongest
    # cell at 48 px (12 or 36, the half-pixel convention), and a hit exactly when in a box
    from pneumocam.localization import point_in_boxes

    assert set(table["peak_x"]) <= {12.0, 24.0, 36.0} and set(table["peak_y"]) <= {12.0, 24.0, 36.0}
    boxes = manifest.set_index("patientId").loc[table["patientId"], "boxes"]
    for (_, row), row_boxes in zip(table.iterrows(), boxes, strict=True):
        assert row["pointing_hit"] == point_in_boxes((row["peak_y"], row["peak_x"]), row_boxes, SIZE)

    overlays_dir = root / "images" / "cam" / "balanced"
    pngs = sorted(p.stem for p in overlays_dir.glob("*.png"))
    assert len(pngs) == 4 and set(pngs) <= set(index["patientId"])
    # three quarters positives first, by decreasing probability
    pos = index[index.label == 1].sort_values(["probability", "patientId"], ascending=[False, True])
    assert set(pos["patientId"].iloc[:3]) <= set(pngs)
    for cell in ("tp", "fp", "fn", "tn"):
        grid = root / "images" / "cam" / f"balanced_grid_{cell}.png"
        assert grid.is_file() and grid.stat().st_size > 1000

    # A Kaggle submission for the DICOM in stage_2_test_images, in original pixel coordinates.
    sub = pd.read_csv(root / "metrics" / "balanced_submission.csv", keep_default_na=False)
    assert list(sub.columns) == ["patientId", "PredictionString"]
    assert sub["patientId"].tolist() == ["rg1-test"]
    values = [float(v) for v in sub["PredictionString"].iloc[0].split()]
    assert len(values) % 5 == 0
    for conf, x, y, w, h in np.reshape(values, (-1, 5)):  # RG1_UNCR is 1841 wide, 1955 high
        assert 0 <= conf <= 1 and x >= 0 and y >= 0 and w > 0 and h > 0
        assert x + w <= 1841 + 1 and y + h <= 1955 + 1
    assert result["outputs"]["submission"].endswith("balanced_submission.csv")


def test_gradcam_and_no_submission(at_root):
    from pneumocam.interpret import interpret

    root, weights = at_root
    (root / "metrics" / "balanced_maps.npy").unlink(missing_ok=True)
    result = interpret(_config(weights, method="gradcam", n=2, n_boot=20, submission=False,
                               split="val"))
    assert result["method"] == "gradcam" and result["sanity_check"]["method"] == "gradcam"
    assert result["split"] == "val" and result["n_split_images"] == COUNTS["val"]
    assert "skipped" in result["detection"]["submission"]
    assert not (root / "metrics" / "balanced_maps.npy").exists()
    assert len(list((root / "images" / "cam" / "balanced").glob("*.png"))) == 2


def test_threshold_fallback_warns(at_root, capsys):
    from pneumocam.interpret import interpret

    root, weights = at_root
    other = root / "weights" / "noeval" / "best.pth"
    other.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights, other)
    shutil.copy(weights.parent / "config.json", other.parent / "config.json")
    result = interpret(_config(other, n=1, n_grid=1, n_boot=10, submission=False))
    assert "warning" in capsys.readouterr().err.lower()
    assert result["classification"]["operating_threshold"] == 0.5
    assert result["classification"]["threshold_source"].startswith("default 0.5")
    assert (root / "images" / "cam" / "noeval_grid_tp.png").is_file()


def test_config_fallback_to_stats_json(at_root, capsys):
    from pneumocam.predict import load_run

    root, weights = at_root
    bare = root / "weights" / "bare" / "best.pth"
    bare.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights, bare)
    run = load_run(bare, "cpu")  # no config.json: data/Processed/stats.json under the root
    stats = processed.read_stats(root / "data" / "Processed")
    assert run.mean == pytest.approx(stats["mean"]) and run.size == SIZE and run.demo
    assert "config.json" in capsys.readouterr().err


def test_bad_weights_are_clear_errors(at_root, tmp_path):
    from pneumocam.errors import CheckpointError
    from pneumocam.interpret import interpret

    with pytest.raises(CheckpointError, match="not found"):
        interpret(_config(tmp_path / "nope" / "best.pth"))
    marker = tmp_path / "executed"
    evil = tmp_path / "evil" / "best.pth"
    evil.parent.mkdir()
    torch.save({"model": _RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        interpret(_config(evil))
    assert not marker.exists()


class _RunsCode:
    """Unpickling this would create a file: the checkpoint loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_bad_settings_and_mixed_sources(at_root, tmp_path):
    from pneumocam.errors import ConfigError, DataSourceError
    from pneumocam.interpret import interpret

    root, weights = at_root
    with pytest.raises(ConfigError, match="method"):
        interpret(_config(weights, method="lime"))
    real = make_processed(tmp_path, kind="rsna")
    with pytest.raises(DataSourceError, match="mix"):
        interpret(_config(weights, data_dir=real))


def test_selection_and_cells_are_deterministic():
    from pneumocam.selection import confusion_cells, select_examples

    labels = np.array([1, 0, 1, 0, 1, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.2, 0.1, 0.9, 0.6, 0.3, 0.05])
    ids = [f"p{i}" for i in range(8)]
    assert select_examples(labels, probs, ids, 4).tolist() == [0, 4, 2, 1]
    assert select_examples(labels, probs, ids, 8).tolist() == [0, 4, 2, 1, 5, 6, 3, 7]
    assert select_examples(labels[:3], probs[:3], ids[:3], 8).tolist() == [0, 2, 1]
    cells = confusion_cells(labels, probs, ids, 0.5, 2)
    assert cells["tp"].tolist() == [0, 4] and cells["fp"].tolist() == [1, 5]
    assert cells["fn"].tolist() == [2] and cells["tn"].tolist() == [7, 3]


def test_overlay_helpers(tmp_path):
    from pneumocam import overlays

    cam_map = np.zeros((10, 10), np.float32)
    cam_map[2, 7] = 1.0
    assert overlays.peak_yx(cam_map) == (2.5, 7.5)  # the pixel's centre, in the boxes' frame
    assert overlays.peak_in_boxes(cam_map, []) is None
    assert overlays.peak_in_boxes(cam_map, [[6, 1, 3, 3]]) is True
    assert overlays.peak_in_boxes(cam_map, [[0, 0, 5, 5]]) is False
    assert "peak in box: yes" in overlays.overlay_title(1, 0.9, True)
    assert "true:" not in overlays.overlay_title(None, 0.9, None, threshold=0.5)
    empty = overlays.cam_grid_figure(np.zeros((0, 10, 10), np.uint8), np.zeros((0, 10, 10)), [],
                                     [], "nothing here", demo=True)
    path = overlays.save_figure(empty, tmp_path / "empty.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    texts = [t.get_text() for t in empty.texts]
    assert overlays.DEMO_NOTE in texts


@pytest.mark.parametrize("cell", [(0, 0), (0, 6), (6, 0), (6, 6), (3, 2)])
def test_overlay_marker_is_the_pointing_game_peak(cell):
    """The + sits at the strongest cell's centre, where the pointing game looks, for the four
    corners and an interior cell; the grid and the run comparison mark the same point."""
    from matplotlib.figure import Figure

    from pneumocam import overlays
    from pneumocam.cam import upsample_maps
    from pneumocam.localization import pointing_game

    row, col = cell
    low = np.random.default_rng(1).random((7, 7)).astype(np.float32)
    low[row, col] = 2.0
    up = upsample_maps(torch.from_numpy(low)[None], (224, 224))[0].numpy()
    norm = (up - up.min()) / (up.max() - up.min())
    centre = ((row + 0.5) * 32, (col + 0.5) * 32)
    box = [[centre[1] - 4, centre[0] - 4, 8, 8]]  # over the cell's centre only
    assert overlays.map_peak(norm, low) == centre
    assert overlays.peak_in_boxes(norm, box, low) is True
    assert pointing_game(low[None], [box], size=224).tolist() == [True]

    def marker(ax) -> tuple[float, float]:
        line = ax.lines[-1]
        return float(line.get_ydata()[0]) + 0.5, float(line.get_xdata()[0]) + 0.5  # imshow frame

    ax = Figure().subplots()
    overlays.draw_overlay(ax, np.zeros((224, 224), np.uint8), norm, box, low_map=low)
    assert marker(ax) == centre
    fig = overlays.cam_overlay_figure(np.zeros((224, 224), np.uint8), norm, box, low_map=low)
    assert marker(fig.axes[1]) == centre
    grid = overlays.cam_grid_figure(np.zeros((1, 224, 224), np.uint8), norm[None], [box], ["a"],
                                    "t", low_maps=low[None])
    assert marker(grid.axes[0]) == centre
    compare = overlays.compare_maps_figure(np.zeros((1, 224, 224), np.uint8), {"r": norm[None]},
                                           {"r": np.array([0.9])}, [box], ["a"],
                                           low_by_run={"r": low[None]})
    assert marker(compare.axes[1]) == centre and "peak in box yes" in compare.axes[1].get_title()


def test_summarize_comparison_builds_sentences_from_numbers():
    from pneumocam.localization_comparison import summarize_comparison

    def report(pg, ci, source="rsna", passed=True):
        base = {"pointing_game": {"value": 0.2, "ci95": [0.15, 0.25]},
                "mass_in_boxes": {"value": 0.1, "ci95": [0.08, 0.12]},
                "iou": {"value": 0.05, "ci95": [0.04, 0.06]}}
        return {"pointing_game": {"value": pg, "ci95": ci},
                "mass_in_boxes": {"value": 0.3, "ci95": [0.25, 0.35]},
                "iou": {"value": 0.2, "ci95": [0.15, 0.25]}, "n_images": 100,
                "baselines": {"fixed_point": base, "mean_box_prior": base, "uniform_random": base},
                "detection": {"rsna_metric": 0.1}, "split": "test", "method": "cam",
                "sanity_check": {"passed": passed, "mean_abs_rho": 0.1 if passed else 0.9},
                "data_source": {"kind": source}, "synthetic_demo": source == "demo"}

    text = summarize_comparison({"original": report(0.5, [0.4, 0.6]),
                                 "balanced": report(0.8, [0.7, 0.9])})
    assert "balanced" in text and "0.800" in text and "0.500" in text
    assert "synthetic" not in text.lower() and "overlap" not in text
    # without per-image tables, no claim about which run is better
    assert "No paired run-vs-run comparison" in text and "balanced beats" not in text
    text = summarize_comparison({"original": report(0.5, [0.4, 0.6], "demo", passed=False),
                                 "balanced": report(0.55, [0.45, 0.65], "demo")})
    assert "SYNTHETIC" in text and "FAILED" in text
    assert "no paired comparison with the image-free baselines" in text


def test_scripts_run_and_fail_cleanly(at_root, capsys):
    import runpy

    root, weights = at_root
    env = {**_env(), paths.ROOT_ENV_VAR: str(root)}
    ok = subprocess.run([sys.executable, str(REPO / "scripts" / "interpret.py"), "--weights",
                         str(weights), "--n", "1", "--n-grid", "1", "--n-boot", "10",
                         "--device", "cpu", "--no-submission", "--batch-size", "16"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "pointing game" in ok.stdout and "synthetic demo" in ok.stdout
    main = runpy.run_path(str(REPO / "scripts" / "interpret.py"), run_name="not_main")["main"]
    assert main(["--weights", str(root / "weights" / "missing" / "best.pth")]) != 0
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != paths.ROOT_ENV_VAR}


def test_trained_folder_comes_from_config_and_another_split_is_refused(tmp_path, monkeypatch):
    """A run trained with --data-dir D is interpreted on D (not data/Processed), and a folder of
    the same kind that puts other patients in the test split is refused, naming both."""
    from pneumocam.errors import DataSourceError
    from pneumocam.interpret import interpret
    from pneumocam.train import TrainConfig, train

    root = tmp_path / "root"
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    trained_on = root / "data" / "elsewhere"
    make_processed(root).rename(trained_on)  # no data/Processed at all
    train(TrainConfig(run_name="elsewhere", data_dir=trained_on, epochs=1, batch_size=8,
                      device="cpu", n_boot=10, progress=False))
    config = json.loads((root / "weights" / "elsewhere" / "config.json").read_text())
    assert config["data_dir"] == "data/elsewhere"  # relative: a moved repository still works
    manifest = processed.read_manifest(trained_on)
    assert config["data_identity"] == {"kind": "demo", "labels_sha256": None,
                                       "split_fingerprint": processed.split_fingerprint(manifest)}

    weights = root / "weights" / "elsewhere" / "best.pth"
    result = interpret(_config(weights, n=1, n_grid=1, n_boot=10, submission=False))
    assert Path(result["data_dir"]) == trained_on
    assert result["data_identity"] == config["data_identity"]

    # The same images, re-split: two training patients swapped with two test patients.
    reshuffled = root / "data" / "reshuffled"
    shutil.copytree(trained_on, reshuffled)
    swapped = manifest.copy()
    swapped["boxes"] = [json.dumps(b) for b in swapped["boxes"]]
    train_idx = swapped.index[swapped.split == "train"][:2]
    test_idx = swapped.index[swapped.split == "test"][:2]
    swapped.loc[train_idx, "split"], swapped.loc[test_idx, "split"] = "test", "train"
    swapped.to_csv(reshuffled / processed.MANIFEST_NAME, index=False)
    with pytest.raises(DataSourceError) as err:
        interpret(_config(weights, data_dir=reshuffled, n=1, n_grid=1, n_boot=10,
                          submission=False))
    message = str(err.value)
    fingerprint = processed.split_fingerprint(processed.read_manifest(reshuffled))
    assert config["data_identity"]["split_fingerprint"] in message and fingerprint in message
    assert f"--data-dir {trained_on}" in message and str(reshuffled) in message


def test_partial_interpretation_never_replaces_the_full_one(at_root):
    from pneumocam.interpret import interpret

    root, weights = at_root
    full = interpret(_config(weights, n=1, n_grid=1, n_boot=10, submission=False))
    before = (root / "metrics" / "balanced_localization.json").read_bytes()
    quick = interpret(_config(weights, n=1, n_grid=1, n_boot=10, submission=False, limit=6))
    assert (root / "metrics" / "balanced_localization.json").read_bytes() == before
    assert full["limit"] is None and full["n_split_images"] == COUNTS["test"]
    partial = json.loads((root / "metrics" / "balanced_limit6_localization.json").read_text())
    assert partial["limit"] == 6 and partial["n_split_images"] == 6 and "partial" in partial
    assert quick["outputs"]["grid_tp"].endswith("balanced_limit6_grid_tp.png")
    assert (root / "images" / "cam" / "balanced_limit6_grid_tp.png").is_file()
    assert len(list((root / "images" / "cam" / "balanced_limit6").glob("*.png"))) == 1


# --------------------------------------------------------------------------- paired statistics


def test_interpret_writes_paired_block_and_baselines_per_image(at_root):
    from pneumocam.interpret import BASELINE_CSV_COLUMNS, interpret

    root, weights = at_root
    interpret(_config(weights, n=0, n_grid=0, n_boot=40, submission=False))
    report = json.loads((root / "metrics" / "balanced_localization.json").read_text())
    table = pd.read_csv(root / "metrics" / "balanced_localization.csv", dtype={"patientId": str})
    assert set(BASELINE_CSV_COLUMNS) <= set(table.columns)
    assert set(table["fixed_point_hit"]) <= {0, 1}
    columns = {"pointing_game": "hit", "mass_in_boxes": "mass_in_boxes", "iou": "iou"}
    mine = {"pointing_game": "pointing_hit", "mass_in_boxes": "mass_in_boxes", "iou": "iou"}
    for key in ("fixed_point", "mean_box_prior", "uniform_random"):
        for metric, col in columns.items():
            entry = report["paired"][key][metric]
            base = table[f"{key}_{col}"].to_numpy(float)
            # the CSV lets a reader recompute the JSON's paired difference and baseline value
            assert entry["difference"] == pytest.approx(
                np.nanmean(table[mine[metric]].to_numpy(float) - base), abs=1e-5)
            assert report["baselines"][key][metric]["value"] == pytest.approx(
                np.nanmean(base), abs=1e-5)
            assert entry["n"] <= len(table) and 0 <= entry["p_value"] <= 1
            lo, hi = entry["ci95"]
            assert lo <= entry["difference"] <= hi
    assert "McNemar" in report["paired"]["fixed_point"]["pointing_game"]["test"]


def _fake_run(root: Path, run: str, hits: Sequence[int], mass: Sequence[float],
              paired_pg: dict, ids: Sequence[str] | None = None) -> dict:
    """A handwritten localization JSON + per-image CSV for ``run`` under ``root/metrics``."""
    n = len(hits)
    ids = list(ids) if ids is not None else [f"p{i:02d}" for i in range(n)]
    metrics = root / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patientId": ids, "pointing_hit": hits, "mass_in_boxes": mass,
                  "iou": np.asarray(mass) / 2}).to_csv(metrics / f"{run}_localization.csv",
                                                       index=False)
    est = {"value": float(np.mean(hits)), "ci95": [0.0, 1.0], "n": n}
    flat = {"difference": 0.0, "ci95": [-0.1, 0.1], "p_value": 1.0, "n": n, "test": "x"}
    paired = {key: {"pointing_game": paired_pg, "mass_in_boxes": flat, "iou": flat}
              for key in ("fixed_point", "mean_box_prior", "uniform_random")}
    report = {"pointing_game": est, "mass_in_boxes": est, "iou": est, "n_images": n,
              "paired": paired, "split": "test", "method": "cam",
              "config": {"n_boot": 200, "seed": 0}, "data_source": {"kind": "demo"},
              "synthetic_demo": True, "sanity_check": {"passed": True, "mean_abs_rho": 0.1}}
    (metrics / f"{run}_localization.json").write_text(json.dumps(report))
    return report


def test_run_vs_run_is_paired_by_patient_id_and_worded_by_interval(tmp_path, monkeypatch):
    from pneumocam.localization import mcnemar_p
    from pneumocam.localization_comparison import (
        PAIRED_COLUMNS,
        load_reports,
        paired_table,
        run_pairs,
        save_comparison,
        summarize_comparison,
    )

    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path))
    n = 30
    better = {"difference": 0.3, "ci95": [0.1, 0.5], "p_value": 0.004, "n": n, "test": "McNemar"}
    worse = {"difference": -0.2, "ci95": [-0.4, -0.05], "p_value": 0.03, "n": n, "test": "McNemar"}
    orig_hits = [0] * 20 + [1] * 10
    bal_hits = [1] * 16 + [0] * 4 + [1] * 10  # 16 discordant pairs, all for balanced
    mass = list(np.linspace(0.1, 0.6, n))
    _fake_run(tmp_path, "original", orig_hits, mass, worse)
    ids = [f"p{i:02d}" for i in range(n)]
    # balanced's CSV lists the same images in another order: pairing is by patientId
    order = np.random.default_rng(0).permutation(n)
    _fake_run(tmp_path, "balanced", [bal_hits[i] for i in order], [mass[i] for i in order],
              better, ids=[ids[i] for i in order])
    reports = load_reports(["original", "balanced"])
    pairs = run_pairs(reports)
    pg = next(p for p in pairs if p["metric"] == "pointing_game")
    assert (pg["a"], pg["b"]) == ("balanced", "original")
    assert pg["difference"] == pytest.approx(16 / 30) and pg["discordant"] == [16, 0]
    assert pg["p_value"] == pytest.approx(mcnemar_p(np.array(bal_hits), np.array(orig_hits)))
    assert pg["ci95"][0] > 0
    mass_pair = next(p for p in pairs if p["metric"] == "mass_in_boxes")
    assert mass_pair["difference"] == pytest.approx(0.0) and mass_pair["ci95"] == [0.0, 0.0]

    text = summarize_comparison(reports, pairs)
    assert "On the pointing game, balanced beats original" in text
    assert f"McNemar p = {pg['p_value']:.3g}" in text
    assert "On the mass in boxes, balanced cannot be told apart from original" in text
    assert "original against the image-free baselines" in text
    assert "original is beaten by: fixed point on the pointing game (-0.200" in text
    assert "balanced against the image-free baselines" in text
    assert "balanced beats: fixed point on the pointing game (+0.300 [+0.100, +0.500]" in text
    assert "balanced cannot be told apart from: fixed point on the mass in boxes" in text
    assert "overlap" not in text and "SYNTHETIC" in text

    table = paired_table(reports, pairs)
    assert tuple(table.columns) == PAIRED_COLUMNS
    assert set(table["kind"]) == {"baseline", "run"} and len(table) == 2 * 9 + 3
    run_row = table[(table.kind == "run") & (table.metric == "pointing_game")].iloc[0]
    assert run_row["verdict"] == "beats" and run_row["n"] == n

    saved = save_comparison(reports)
    on_disk = pd.read_csv(saved["paired"])
    assert len(on_disk) == len(table)
    assert "balanced beats original" in saved["conclusions"].read_text()

    # different images: no paired claim, and the reason is said
    _fake_run(tmp_path, "other", orig_hits[:10], mass[:10], better)
    pairs = run_pairs(load_reports(["original", "other"]))
    assert pairs == [{"a": "other", "b": "original", "skipped": pairs[0]["skipped"]}]
    assert "different images" in pairs[0]["skipped"]
    assert "no paired comparison" in summarize_comparison(load_reports(["original", "other"]),
                                                          pairs)
