"""Preprocessing: RSNA-layout DICOMs -> data/Processed (pneumocam.preprocess, scripts/preprocess.py).

One demo dataset (60 synthetic DICOMs) is generated per session and shared; every run writes
64x64 arrays into its own temporary folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumocam import dicom, paths, rsna
from pneumocam.atomic import default_file_mode
from pneumocam.demo import make_demo_dataset
from pneumocam.errors import ConfigError, DataSourceError, LabelsError
from pneumocam.preprocess import (
    CONFIG_NAME,
    PreprocessConfig,
    _pixel_sums,
    _real_paths,
    ensure_processed,
    resolve_data_dir,
    run_preprocess,
    save_array_atomic,
    split_patients,
)
from pneumocam.processed import (
    MANIFEST_COLUMNS,
    array_relpath,
    load_split,
    read_manifest,
    read_stats,
)

SIZE = 64
N_DEMO = 60
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "preprocess.py"


@pytest.fixture(autouse=True)
def _root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default folders (data/, images/, ...) point into the test's temporary folder."""
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path / "root"))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "rsna-layout"
    make_demo_dataset(out, N_DEMO, seed=0, workers=1, progress=False)
    return out


def config(data: Path, out: Path, **kw) -> PreprocessConfig:
    kw = {"size": SIZE, "workers": 1, "progress": False, **kw}
    return PreprocessConfig(data_dir=data, out_dir=out, **kw)


@pytest.fixture(scope="session")
def processed(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("processed") / "Processed"
    summary = run_preprocess(config(demo_data, out))
    assert summary.written == N_DEMO and summary.reused == 0 and summary.skipped == 0
    return out


@pytest.fixture(scope="session")
def bad_data(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo dataset with a corrupt, a truncated and a missing DICOM, and an unlabelled one."""
    root = tmp_path_factory.mktemp("bad") / "rsna-layout"
    shutil.copytree(demo_data, root)
    images = root / rsna.TRAIN_IMAGES_DIR
    ids = sorted(p.stem for p in images.glob("*.dcm"))
    corrupt, truncated, missing = ids[3], ids[10], ids[20]
    (images / f"{corrupt}.dcm").write_bytes(os.urandom(5000))
    data = (images / f"{truncated}.dcm").read_bytes()
    (images / f"{truncated}.dcm").write_bytes(data[: len(data) // 2])
    (images / f"{missing}.dcm").unlink()
    shutil.copy(images / f"{ids[0]}.dcm", images / "unlabelled-extra.dcm")
    return {"root": root, "corrupt": corrupt, "truncated": truncated, "missing": missing}


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ----------------------------------------------------------------------------- outputs


def test_outputs_follow_the_processed_contract(processed: Path, demo_data: Path) -> None:
    manifest = read_csv(processed / "manifest.csv")
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == N_DEMO and manifest["patientId"].is_unique
    labels = rsna.read_labels(demo_data).set_index("patientId")
    for rec in manifest.to_dict("records"):
        pid = rec["patientId"]
        assert rec["array_file"] == array_relpath(rec["split"], int(rec["label"]), pid)
        arr = np.load(processed / rec["array_file"], allow_pickle=False)
        assert arr.dtype == np.uint8 and arr.shape == (SIZE, SIZE)
        assert int(rec["label"]) == labels.loc[pid, "Target"]
        assert rec["class"] == labels.loc[pid, "class"]
        assert Path(rec["source_file"]) == (demo_data / rsna.TRAIN_IMAGES_DIR / f"{pid}.dcm").resolve()
        assert rec["view_position"] in ("AP", "PA") and rec["sex"] in ("M", "F")
        assert rec["age"].isdigit()
    npys = sorted(p.relative_to(processed).as_posix() for p in processed.glob("*/*/*.npy"))
    assert npys == sorted(manifest["array_file"])

    stats = read_stats(processed)
    assert stats["size"] == SIZE
    assert stats["source"]["kind"] == "demo" and stats["source"]["path"] == str(demo_data.resolve())
    assert stats["source"]["synthetic_images"] == N_DEMO
    assert stats["parameters"] == {"size": SIZE, "val_fraction": 0.1, "test_fraction": 0.1,
                                   "seed": 0, "fast": True}
    assert stats["provenance"]["versions"]["pydicom"] and "git" in stats["provenance"]
    for split in ("train", "val", "test"):
        part = manifest[manifest["split"] == split]
        assert stats["counts"][split] == {"0": int((part["label"] == "0").sum()),
                                          "1": int((part["label"] == "1").sum())}
        assert sum(stats["class_counts"][split].values()) == len(part)
    assert stats["last_run"]["fast_path_written"] == N_DEMO  # demo DICOMs are RSNA-like JPEGs
    skipped = read_csv(processed / "skipped.csv")
    assert list(skipped.columns) == ["file", "reason"] and skipped.empty
    for name in ("manifest.csv", "skipped.csv", "stats.json", CONFIG_NAME):  # readable by all
        assert (processed / name).stat().st_mode & 0o777 == default_file_mode()
    assert json.loads((processed / CONFIG_NAME).read_text())["source"]["kind"] == "demo"
    # the reader side of the contract accepts it
    train = load_split(processed, "train")
    assert train.images.shape[1:] == (SIZE, SIZE) and len(train) == stats["counts"]["train"]["0"] \
        + stats["counts"]["train"]["1"]


def test_train_mean_std_are_exact(processed: Path) -> None:
    stats = read_stats(processed)
    train = load_split(processed, "train")
    pixels = train.images.astype(np.float64) / 255.0
    assert stats["mean"] == pytest.approx(pixels.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(pixels.std(), rel=1e-9)
    assert stats["mean_std_scope"] == "train"


def test_boxes_are_in_output_pixels(processed: Path, demo_data: Path) -> None:
    labels = rsna.read_labels(demo_data).set_index("patientId")
    manifest = read_manifest(processed)
    positives = manifest[manifest["label"] == 1]
    assert len(positives) >= 5 and any(len(b) > 1 for b in positives["boxes"])
    scale = SIZE / rsna.RSNA_IMAGE_SIZE  # demo images are 1024x1024: no padding
    for pid, boxes in zip(positives["patientId"], positives["boxes"], strict=True):
        expected = np.asarray(labels.loc[pid, "boxes"]) * scale
        np.testing.assert_allclose(np.asarray(boxes), expected, atol=0.006)
    assert all(b == [] for b in manifest.loc[manifest["label"] == 0, "boxes"])


def test_resume_restores_boxes_of_a_non_square_image(tmp_path: Path) -> None:
    """A reused array's manifest row comes from the DICOM header alone (padding included)."""
    from pydicom.data import get_testdata_file

    data = tmp_path / "data"
    (data / rsna.TRAIN_IMAGES_DIR).mkdir(parents=True)
    shutil.copy(get_testdata_file("RG1_UNCR.dcm"), data / rsna.TRAIN_IMAGES_DIR / "rg1.dcm")
    (data / rsna.LABELS_NAME).write_text("patientId,x,y,width,height,Target\n"
                                         "rg1,100,200,300,400,1\nrg1,0,0,1841,1955,1\n")
    out = tmp_path / "out"
    run_preprocess(config(data, out, val_fraction=0.0, test_fraction=0.0))
    first = (out / "manifest.csv").read_bytes()
    boxes = read_manifest(out)["boxes"][0]
    # 1955 rows x 1841 columns: padded left/right by 57 to 1955, then scaled by 64/1955
    s = SIZE / 1955
    np.testing.assert_allclose(boxes, [[(100 + 57) * s, 200 * s, 300 * s, 400 * s],
                                       [57 * s, 0, 1841 * s, 1955 * s]], atol=0.006)
    (out / "manifest.csv").unlink()
    summary = run_preprocess(config(data, out, val_fraction=0.0, test_fraction=0.0))
    assert summary.reused == 1 and summary.written == 0
    assert (out / "manifest.csv").read_bytes() == first


# ----------------------------------------------------------------------------- the split


def test_split_is_stratified_seeded_and_disjoint(demo_data: Path) -> None:
    labels = rsna.read_labels(demo_data)
    a = split_patients(labels, 0.2, 0.2, seed=0)
    assert sorted(a["patientId"]) == sorted(labels["patientId"])  # each patient exactly once
    for target, group in labels.groupby("Target"):
        n = len(group)
        counts = a[a["Target"] == target]["split"].value_counts()
        assert counts.get("test", 0) == int(np.floor(n * 0.2 + 0.5))
        assert counts.get("val", 0) == int(np.floor(n * 0.2 + 0.5))
    shuffled = labels.sample(frac=1.0, random_state=1)
    b = split_patients(shuffled, 0.2, 0.2, seed=0)
    pd.testing.assert_frame_equal(a, b)  # row order of the label table plays no part
    c = split_patients(labels, 0.2, 0.2, seed=1)
    assert not a.set_index("patientId")["split"].equals(c.set_index("patientId")["split"]
                                                        .reindex(a["patientId"]))
    # any prefix of a split is class-stratified
    train = a[a["split"] == "train"]
    first_half = train.iloc[: len(train) // 2]
    assert abs(first_half["Target"].mean() - train["Target"].mean()) < 0.1
    with pytest.raises(ConfigError, match="sum below 1"):
        split_patients(labels, 0.5, 0.5)


# ----------------------------------------------------------------------------- bad input


def test_bad_files_are_listed_and_the_run_continues(bad_data: dict, processed: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_preprocess(config(bad_data["root"], out, workers=2))
    assert (summary.written, summary.skipped, summary.missing_dicom, summary.unlabeled) == \
        (N_DEMO - 3, 2, 1, 1)
    assert summary.reused == 0 and summary.images_per_second > 0 and summary.seconds > 0
    skipped = read_csv(out / "skipped.csv").set_index("file")["reason"]
    images = bad_data["root"] / rsna.TRAIN_IMAGES_DIR
    assert len(skipped) == 4
    assert "DICM" in skipped[str(images / f"{bad_data['corrupt']}.dcm")]
    assert "truncated" in skipped[str(images / f"{bad_data['truncated']}.dcm")]
    assert "no DICOM" in skipped[str(images / f"{bad_data['missing']}.dcm")]
    assert "without a row" in skipped[str(images / "unlabelled-extra.dcm")]
    stats = read_stats(out)
    assert stats["skipped"] == {"unreadable": 2, "missing_dicom": 1, "unlabeled": 1}

    # The failures change nothing else: same split, same rows, same arrays (2 workers vs 1).
    good = read_csv(processed / "manifest.csv").set_index("patientId")
    bad = read_csv(out / "manifest.csv").set_index("patientId")
    lost = {bad_data["corrupt"], bad_data["truncated"], bad_data["missing"]}
    assert set(good.index) - set(bad.index) == lost
    cols = ["split", "label", "class", "view_position", "sex", "age", "boxes", "array_file"]
    pd.testing.assert_frame_equal(bad[cols], good.drop(index=list(lost))[cols])
    for rel in bad["array_file"][:10]:
        assert np.array_equal(np.load(out / rel), np.load(processed / rel))


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="the crash is planted by patching the parent before workers fork")
def test_a_decoder_crash_costs_one_file_not_the_run(demo_data: Path, processed: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    victim = sorted(p.stem for p in (demo_data / rsna.TRAIN_IMAGES_DIR).glob("*.dcm"))[7]
    real = dicom.load_dicom_resized

    def crashing(path, *args, **kwargs):
        if Path(path).stem == victim:
            os.kill(os.getpid(), signal.SIGKILL)  # what a segfault in a C decoder looks like
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dicom, "load_dicom_resized", crashing)
    out = tmp_path / "out"
    summary = run_preprocess(config(demo_data, out, workers=2))
    # arrays finished before the crash in the broken chunks are kept (reused) on the re-run
    assert summary.n_images == N_DEMO - 1 and summary.skipped == 1
    skipped = read_csv(out / "skipped.csv")
    assert skipped["file"].tolist() == [str(demo_data / rsna.TRAIN_IMAGES_DIR / f"{victim}.dcm")]
    assert "decoder crashed" in skipped["reason"][0]
    good = read_csv(processed / "manifest.csv")
    assert (read_csv(out / "manifest.csv").to_numpy() == good[good["patientId"] != victim]
            .to_numpy()).all()


def test_missing_inputs_are_clear_errors(tmp_path: Path, demo_data: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        run_preprocess(config(tmp_path / "nowhere", tmp_path / "out"))
    no_labels = tmp_path / "no_labels"
    (no_labels / rsna.TRAIN_IMAGES_DIR).mkdir(parents=True)
    with pytest.raises(LabelsError, match=r"stage_2_train_labels.csv not found[\s\S]*"
                                          r"patientId,x,y,width,height,Target"):
        run_preprocess(config(no_labels, tmp_path / "out"))
    bad_cols = tmp_path / "bad_cols"
    (bad_cols / rsna.TRAIN_IMAGES_DIR).mkdir(parents=True)
    (bad_cols / rsna.LABELS_NAME).write_text("patientId,Target\na,0\n")
    with pytest.raises(LabelsError, match=r"lacks the column\(s\) \['x', 'y', 'width', 'height'\]"):
        run_preprocess(config(bad_cols, tmp_path / "out"))
    with pytest.raises(ConfigError):
        run_preprocess(config(demo_data, tmp_path / "out", val_fraction=0.7, test_fraction=0.4))


# ----------------------------------------------------------------------------- sources


def test_refuses_to_mix_sources_or_parameters(processed: Path, bad_data: dict,
                                              tmp_path: Path, demo_data: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(processed, out)
    before = sorted(p.name for p in out.glob("*/*/*.npy"))
    with pytest.raises(DataSourceError) as err:
        run_preprocess(config(bad_data["root"], out))
    msg = str(err.value)
    assert str(demo_data.resolve()) in msg and str(bad_data["root"].resolve()) in msg
    assert "--overwrite" in msg
    with pytest.raises(DataSourceError, match=r"other parameters.*'size': \(64, 32\)"):
        run_preprocess(config(demo_data, out, size=32))
    assert sorted(p.name for p in out.glob("*/*/*.npy")) == before  # nothing touched

    summary = run_preprocess(config(bad_data["root"], out, size=32, overwrite=True))
    assert summary.reused == 0 and summary.written == N_DEMO - 3
    stats = read_stats(out)
    assert stats["source"]["path"] == str(bad_data["root"].resolve()) and stats["size"] == 32
    arrays = list(out.glob("*/*/*.npy"))
    assert len(arrays) == N_DEMO - 3 and {np.load(p).shape for p in arrays} == {(32, 32)}

    # unknown origin: arrays without stats/config
    unknown = tmp_path / "unknown"
    (unknown / "train" / "0").mkdir(parents=True)
    np.save(unknown / "train" / "0" / "x.npy", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(DataSourceError, match="not made by preprocessing.*holds train/"):
        run_preprocess(config(demo_data, unknown))
    # a stats.json that cannot be read: unknown origin too
    (out / "stats.json").write_text("{not json")
    with pytest.raises(DataSourceError, match="unknown origin"):
        run_preprocess(config(demo_data, out, size=32))


def test_default_source_is_real_data_else_generated_demo(tmp_path: Path, demo_data: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = ensure_processed(n_demo=12, size=32, workers=1, progress=False)
    assert out == paths.processed_dir().resolve()
    text = capsys.readouterr().out
    assert "SYNTHETIC DEMO DATA" in text and "generating the SYNTHETIC DEMO dataset (12 images)" in text
    assert (paths.demo_dir() / "demo_info.json").is_file()
    stats = read_stats(out)
    assert stats["source"]["kind"] == "demo" and stats["n_images"] == 12
    mtime = (out / "manifest.csv").stat().st_mtime_ns
    assert ensure_processed(progress=False) == out  # valid outputs: nothing redone
    assert (out / "manifest.csv").stat().st_mtime_ns == mtime
    assert "SYNTHETIC DEMO DATA, not RSNA" in capsys.readouterr().out
    with pytest.raises(DataSourceError, match="--overwrite"):
        ensure_processed(data_dir=demo_data, progress=False)

    # once real files are in data/rsna-pneumonia-detection-challenge/, they are the default
    real = paths.rsna_dir()
    (real / rsna.TRAIN_IMAGES_DIR).mkdir(parents=True)
    shutil.copy(demo_data / rsna.LABELS_NAME, real / rsna.LABELS_NAME)
    assert resolve_data_dir() == real.resolve()


# ----------------------------------------------------------------------------- output folder


def _user_files(folder: Path) -> dict[str, bytes]:
    """Files a user keeps in a folder, some where preprocessing would write."""
    files = {"notes.txt": b"my notes", "train/NORMAL/x.jpeg": b"\xff\xd8 jpeg",
             "val/PNEUMONIA/y.jpeg": b"\xff\xd8 jpeg", "train/0/mine.png": b"png",
             "train/0/mine.npy": b"not ours"}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


def test_a_folder_it_did_not_make_is_refused_even_with_overwrite(tmp_path: Path,
                                                                 demo_data: Path) -> None:
    victim = tmp_path / "victim"
    files = _user_files(victim)
    for overwrite in (False, True):
        with pytest.raises(DataSourceError) as err:
            run_preprocess(config(demo_data, victim, overwrite=overwrite))
        msg = str(err.value)
        assert str(victim) in msg and "notes.txt" in msg and "train/" in msg
        assert "choose an empty --out-dir" in msg and "\n" not in msg
    assert {p.relative_to(victim).as_posix() for p in victim.rglob("*") if p.is_file()} == set(files)
    assert all((victim / rel).read_bytes() == data for rel, data in files.items())
    # an empty folder is fine (a lock file left by a killed run does not count)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".preprocess.lock").touch()
    assert run_preprocess(config(demo_data, empty)).written == N_DEMO


def test_overwrite_deletes_only_what_preprocessing_wrote(processed: Path, tmp_path: Path,
                                                         demo_data: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(processed, out)
    files = _user_files(out)  # added to a folder preprocessing made: it is still ours
    summary = run_preprocess(config(demo_data, out, size=32, overwrite=True))
    assert summary.written == N_DEMO and summary.reused == 0
    assert all((out / rel).read_bytes() == data for rel, data in files.items())
    assert {np.load(p).shape for p in out.glob("*/[01]/*.npy") if p.name != "mine.npy"} == {(32, 32)}
    # with the outputs gone, the folders they made go too, unless a user's file is inside
    (out / "notes.txt").unlink()
    (out / "stats.json").unlink()
    from pneumocam.preprocess import _clear_outputs
    _clear_outputs(out)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.name != ".preprocess.lock")
    assert left == ["train", "train/0", "train/0/mine.npy", "train/0/mine.png", "train/NORMAL",
                    "train/NORMAL/x.jpeg", "val", "val/PNEUMONIA", "val/PNEUMONIA/y.jpeg"]


def test_an_output_folder_that_cannot_be_written_is_refused_up_front(
        tmp_path: Path, demo_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"--out-dir .*a_file/out is not writable.*permissions"):
        run_preprocess(config(demo_data, a_file / "out"))
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        run_preprocess(config(demo_data, a_file))

    import tempfile as tempfile_module

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    out = tmp_path / "read_only"
    out.mkdir()
    monkeypatch.setattr(tempfile_module, "TemporaryFile", read_only)
    with pytest.raises(ConfigError, match="read_only is not writable \\(Permission denied\\)"):
        run_preprocess(config(demo_data, out))
    assert list(out.iterdir()) == []
    if os.geteuid() != 0:  # root writes anywhere: the real permission only bites others
        monkeypatch.undo()
        out.chmod(0o555)
        try:
            with pytest.raises(ConfigError, match="not writable"):
                run_preprocess(config(demo_data, out))
        finally:
            out.chmod(0o755)


# ----------------------------------------------------------------------------- data folder


def test_no_patient_in_common_is_a_one_line_error(tmp_path: Path, demo_data: Path) -> None:
    n_labels = len(rsna.read_labels(demo_data))
    cases = {}
    missing = tmp_path / "missing"  # no images folder at all
    missing.mkdir()
    shutil.copy(demo_data / rsna.LABELS_NAME, missing)
    cases[missing] = "0 DICOM files in"
    empty = tmp_path / "empty"
    (empty / rsna.TRAIN_IMAGES_DIR).mkdir(parents=True)
    shutil.copy(demo_data / rsna.LABELS_NAME, empty)
    cases[empty] = "0 DICOM files in"
    other = tmp_path / "other"  # images of other patients
    shutil.copytree(demo_data, other)
    (other / rsna.LABELS_NAME).write_text(rsna.LABELS_NAME and
                                          "patientId,x,y,width,height,Target\nnobody,,,,,0\n")
    cases[other] = f"{N_DEMO} DICOM files in"
    for folder, found in cases.items():
        with pytest.raises(DataSourceError) as err:
            run_preprocess(config(folder, tmp_path / "out"))
        msg = str(err.value)
        assert "\n" not in msg and str(folder) in msg and found in msg and "0 in common" in msg
        assert f"{rsna.TRAIN_IMAGES_DIR}/<patientId>.dcm" in msg
    assert f"{n_labels} patients in" in str(err.value) or "1 patients in" in str(err.value)
    proc = _script("--data-dir", str(empty), "--out-dir", str(tmp_path / "o"), env_root=tmp_path)
    _, err_text = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err_text  # the data, not the command
    assert err_text.startswith("error: ") and "0 in common" in err_text
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_bad_label_boxes_are_reported_not_fatal(tmp_path: Path, demo_data: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    labels = (data / rsna.LABELS_NAME).read_text().splitlines()
    header, rows = labels[0], labels[1:]
    pos = next(r.split(",")[0] for r in rows if r.endswith(",1"))
    pos_rows = [r for r in rows if r.startswith(pos + ",")]
    neg = next(r.split(",")[0] for r in rows if r.endswith(",0"))
    rows = [r for r in rows if not r.startswith(pos + ",")] + [
        f"{pos},10,20,inf,40,1",           # not finite
        f"{pos},10,20,-5,40,1",            # negative width
        f"{pos},5000,20,30,40,1",          # wholly off the 1024x1024 image
        f"{pos},1000,-10,100,50,1",        # partly off: clipped to [1000, 0, 24, 40]
        pos_rows[0], pos_rows[0],          # doubled: collapsed
        *[r for r in rows if r.startswith(neg + ",")],  # a negative row doubled
    ]
    (data / rsna.LABELS_NAME).write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "out"
    summary = run_preprocess(config(data, out, size=1024 // 16))
    assert summary.skipped == 0 and summary.written == N_DEMO
    assert summary.labels == {"invalid_rows": 3, "duplicate_rows": 2, "clipped_boxes": 1,
                              "positives_without_box": 0}
    assert read_stats(out)["labels"] == summary.labels
    skipped = read_csv(out / "skipped.csv")
    bad = skipped[skipped["file"] == str(data / rsna.LABELS_NAME)]
    assert len(bad) == 3 and all(f"patient {pos}" in r for r in bad["reason"])
    assert sum("not finite" in r for r in bad["reason"]) == 1
    assert sum("wholly outside the 1024x1024 image" in r for r in bad["reason"]) == 1
    boxes = read_manifest(out).set_index("patientId").loc[pos, "boxes"]
    s = 64 / 1024
    first = [float(v) for v in pos_rows[0].split(",")[1:5]]
    np.testing.assert_allclose(boxes, [[1000 * s, 0, 24 * s, 40 * s], [v * s for v in first]],
                               atol=0.006)
    assert "3 with an unusable box" in summary.line() and "2 duplicates" in summary.line()


def test_unusable_images_are_skipped_with_their_reason(tmp_path: Path, demo_data: Path) -> None:
    import pydicom

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    images = data / rsna.TRAIN_IMAGES_DIR
    ids = sorted(p.stem for p in images.glob("*.dcm"))
    huge, blank = images / f"{ids[1]}.dcm", images / f"{ids[2]}.dcm"
    ds = pydicom.dcmread(huge)  # a JPEG of 1024x1024 claiming 60000x60000 (header and frame)
    ds.Rows = ds.Columns = 60000
    ds.save_as(huge)
    raw = bytearray(huge.read_bytes())
    sof = raw.find(b"\xff\xc0")
    raw[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    huge.write_bytes(bytes(raw))
    ds = pydicom.dcmread(blank)  # a window that maps every pixel to black
    ds.WindowCenter, ds.WindowWidth = 5000, 10
    ds.save_as(blank)
    out = tmp_path / "out"
    summary = run_preprocess(config(data, out))
    assert summary.skipped == 2 and summary.written == N_DEMO - 2
    reasons = dict(read_csv(out / "skipped.csv").itertuples(index=False, name=None))
    assert "above the 16384 px per side" in reasons[str(huge)]
    assert "no usable contrast" in reasons[str(blank)]
    assert not set(read_manifest(out)["patientId"]) & {ids[1], ids[2]}


def test_a_moved_project_keeps_its_processed_data(tmp_path: Path, demo_data: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(root))
    shutil.copytree(demo_data, paths.demo_dir())
    first = run_preprocess(config(paths.demo_dir(), paths.processed_dir()))
    assert first.written == N_DEMO
    source = read_stats(paths.processed_dir())["source"]
    assert source["path"] == "data/demo"  # relative to the repository root
    assert source["abs_path"] == str(paths.demo_dir().resolve())

    moved = tmp_path / "elsewhere" / "renamed-project"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(moved))
    again = run_preprocess(config(paths.demo_dir(), paths.processed_dir()))
    assert again.written == 0 and again.reused == N_DEMO  # accepted, nothing redone
    assert read_stats(paths.processed_dir())["source"]["path"] == "data/demo"
    assert ensure_processed(data_dir=paths.demo_dir(), progress=False) == paths.processed_dir()
    # the same labels with another set of images is another source
    extra = paths.demo_dir() / rsna.TRAIN_IMAGES_DIR
    shutil.copy(next(extra.glob("*.dcm")), extra / "extra.dcm")
    with pytest.raises(DataSourceError, match="another data source"):
        run_preprocess(config(paths.demo_dir(), paths.processed_dir()))


# ----------------------------------------------------------------------------- resume + CLI


def _script(*args: str, env_root: Path) -> subprocess.Popen:
    env = {**os.environ, paths.ROOT_ENV_VAR: str(env_root)}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.glob("*/*/*"))}


def _stable_stats(folder: Path) -> dict:
    stats = read_stats(folder)
    stats.pop("provenance")
    stats.pop("last_run")  # what this run decoded vs reused, its timing
    return stats


def test_resume_after_sigkill_matches_uninterrupted_run(demo_data: Path, tmp_path: Path) -> None:
    args = ["--data-dir", str(demo_data), "--size", str(SIZE), "--workers", "1", "--no-fast"]
    killed, reference = tmp_path / "killed", tmp_path / "reference"

    proc = _script(*args, "--out-dir", str(killed), env_root=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(killed.glob("*/*/*.npy"))) >= 5:
            break
        time.sleep(0.003)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    time.sleep(0.6)  # the orphaned decoding worker notices its parent is gone and exits
    n_done = len(list(killed.glob("*/*/*.npy")))
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 5 <= n_done < N_DEMO and not (killed / "manifest.csv").exists()
    # what a kill during np.save leaves behind, and an array damaged on disk
    stale = killed / "train" / "0" / "some-patient.npy.4242.tmp"
    stale.write_bytes(b"\x93NUMPY partial")
    victim = next(killed.glob("*/*/*.npy"))
    victim.write_bytes(victim.read_bytes()[:60])

    resumed = _script(*args, "--out-dir", str(killed), "--no-progress", env_root=tmp_path)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"({N_DEMO - n_done + 1} written, {n_done - 1} reused)" in out
    full = _script(*args, "--out-dir", str(reference), "--no-progress", env_root=tmp_path)
    assert full.wait(timeout=120) == 0

    assert not list(killed.rglob("*.tmp"))
    assert _tree(killed) == _tree(reference)
    assert (killed / "manifest.csv").read_bytes() == (reference / "manifest.csv").read_bytes()
    assert (killed / "skipped.csv").read_bytes() == (reference / "skipped.csv").read_bytes()
    assert _stable_stats(killed) == _stable_stats(reference)


def test_cli_exit_codes(tmp_path: Path, demo_data: Path) -> None:
    proc = _script("--data-dir", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "o"),
                   env_root=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "does not exist" in err and "Traceback" not in err

    broken = tmp_path / "broken"
    (broken / rsna.TRAIN_IMAGES_DIR).mkdir(parents=True)
    shutil.copy(demo_data / rsna.LABELS_NAME, broken / rsna.LABELS_NAME)
    for pid in rsna.read_labels(demo_data)["patientId"][:3]:
        (broken / rsna.TRAIN_IMAGES_DIR / f"{pid}.dcm").write_bytes(b"not a dicom")
    proc = _script("--data-dir", str(broken), "--out-dir", str(tmp_path / "o"), "--workers", "1",
                   "--size", "32", env_root=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "no image could be written" in err
    assert "0 images" in out and f"{N_DEMO - 3} labels without DICOM" in out
    assert len(read_csv(tmp_path / "o" / "skipped.csv")) == N_DEMO
    assert not (tmp_path / "o" / "manifest.csv").exists()


# ----------------------------------------------------------------------------- worker helpers


@pytest.mark.parametrize("side", [1, 224, 1024])
def test_pixel_sums_are_exact_integers(side: int) -> None:
    rng = np.random.default_rng(side)
    for image in (rng.integers(0, 256, (side, side), dtype=np.uint8),
                  np.full((side, side), 255, dtype=np.uint8)):
        values = image.ravel().astype(np.int64)
        assert _pixel_sums(image) == (int(values.sum()), int(values @ values))


def test_saved_arrays_are_what_np_save_writes(tmp_path: Path) -> None:
    import io
    for array in (np.arange(224 * 224, dtype=np.uint8).reshape(224, 224),
                  np.zeros((3, 5), np.float32), np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]):
        target = tmp_path / "a.npy"
        save_array_atomic(target, array)
        expected = io.BytesIO()
        np.save(expected, np.ascontiguousarray(array))
        assert target.read_bytes() == expected.getvalue()
        np.testing.assert_array_equal(np.load(target), array)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]  # no temporary file left


def test_real_paths_resolve_linked_files_and_folders(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.dcm").write_bytes(b"a")
    (real / "b.dcm").write_bytes(b"b")
    linked_dir = tmp_path / "linked"
    linked_dir.symlink_to(real)
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.dcm").symlink_to(real / "a.dcm")
    files = [linked_dir / "a.dcm", real / "b.dcm", other / "c.dcm"]
    assert _real_paths(files) == [f.resolve().as_posix() for f in files]


def test_telling_demo_from_real_data_does_not_import_the_generator(demo_data: Path) -> None:
    code = ("import sys; from pneumocam import preprocess, rsna; "
            f"s = preprocess.describe_source(rsna.find_layout({str(demo_data)!r}).root, "
            f"rsna.find_layout({str(demo_data)!r})); "
            "print(s['kind'], 'pneumocam.demo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["demo", "False"]
