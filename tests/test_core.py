"""The shared core: paths, provenance, checkpoints, the model and the processed-data contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pneumocam import checkpoint, paths, processed, provenance
from pneumocam.atomic import atomic_write, default_file_mode
from pneumocam.errors import CheckpointError, ProcessedDataError
from pneumocam.model import build_model, load_state_dict_checked


def test_paths_follow_root_override(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV_VAR, str(tmp_path))
    assert paths.repo_root() == tmp_path.resolve()
    assert paths.processed_dir() == tmp_path.resolve() / "data" / "Processed"
    assert paths.rsna_dir().name == "rsna-pneumonia-detection-challenge"
    assert paths.cam_images_dir("balanced") == tmp_path.resolve() / "images" / "cam" / "balanced"


def test_paths_default_to_the_checkout_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    root = paths.repo_root()
    assert (root / "pyproject.toml").is_file()
    assert (root / "src" / "pneumocam" / "paths.py").is_file()


def test_model_is_one_channel_one_logit_with_torchvision_names():
    model = build_model()
    names = [name for name, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                     "layer4", "avgpool", "fc"]
    assert model.conv1.in_channels == 1
    assert tuple(model.fc.weight.shape) == (1, 512)
    out = model.eval()(torch.zeros(2, 1, 64, 64))
    assert out.shape == (2, 1)


def test_pretrained_offline_fails_clearly(monkeypatch):
    from torchvision.models import ResNet18_Weights

    def no_network(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", no_network)
    with pytest.raises(CheckpointError, match="could not be downloaded"):
        build_model(pretrained=True)


def test_mismatched_state_dict_is_a_checkpoint_error():
    model = build_model()
    state = build_model().state_dict()
    state["fc.weight"] = torch.zeros(2, 512)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_state_dict_checked(model, state, "some.pth")


def test_checkpoint_round_trip_and_last_format(tmp_path):
    model = build_model()
    best = checkpoint.save_checkpoint(model.state_dict(), tmp_path / "best.pth")
    last = checkpoint.save_checkpoint({"model": model.state_dict(), "epoch": 3}, tmp_path / "last.pth")
    for path in (best, last):
        state = checkpoint.load_model_state(path)
        assert set(state) == set(model.state_dict())
    assert not list(tmp_path.glob("*.tmp"))


def test_atomic_write_replaces_whole_files_with_plain_permissions(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_write(target, newline="") as fh:
        fh.write("a,b\r\n1,2\r\n")
    assert target.read_bytes() == b"a,b\r\n1,2\r\n"
    assert target.stat().st_mode & 0o777 == default_file_mode()  # not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic_write(target, "wb", fsync=True) as fh:
        fh.write(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"a,b\r\n1,2\r\n"  # the old file, untouched
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]  # no temporary left
    provenance.write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == default_file_mode()


class _RunsCode:
    """A pickled object whose unpickling would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    bad = tmp_path / "evil.pth"
    torch.save({"model": _RunsCode(marker)}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load_checkpoint(bad)
    assert not marker.exists()


def test_missing_and_truncated_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load_checkpoint(tmp_path / "nope.pth")
    path = checkpoint.save_checkpoint(build_model().state_dict(), tmp_path / "best.pth")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated|not a readable|refused"):
        checkpoint.load_checkpoint(path)


def test_provenance_is_json_and_names_versions(tmp_path):
    block = provenance.provenance()
    assert block["versions"]["torch"] == torch.__version__.split("+")[0]
    assert "commit" in block["git"]
    out = provenance.write_json_atomic(tmp_path / "x.json", {"p": block, "a": np.float32(0.5),
                                                              "path": tmp_path})
    loaded = json.loads(out.read_text())
    assert loaded["a"] == 0.5 and loaded["path"] == str(tmp_path)


def test_read_json_object_is_none_for_anything_but_a_readable_object(tmp_path):
    """What the reports and the pipeline's skip rule read: missing, broken, binary, a list,
    a folder: None; an object: the dict."""
    out = provenance.write_json_atomic(tmp_path / "ok.json", {"a": 1})
    assert provenance.read_json_object(out) == {"a": 1}
    (tmp_path / "broken.json").write_text('{"a": ')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00{")
    (tmp_path / "list.json").write_text("[1, 2]")
    for name in ("missing.json", "broken.json", "binary.json", "list.json"):
        assert provenance.read_json_object(tmp_path / name) is None, name
    assert provenance.read_json_object(tmp_path) is None


def test_json_get_walks_nested_objects_and_stops_at_anything_else():
    doc = {"a": {"b": {"c": 3}, "list": [1]}, "n": None}
    assert provenance.json_get(doc, "a", "b", "c") == 3
    assert provenance.json_get(doc, "a", "b") == {"c": 3} and provenance.json_get(doc) is doc
    for keys in (("x",), ("a", "x", "c"), ("a", "list", "0"), ("n", "b")):
        assert provenance.json_get(doc, *keys) is None, keys
    assert provenance.json_get(None, "a") is None


def _write_processed(root, n=6, size=8):
    rows = []
    for i in range(n):
        split = processed.SPLITS[i % 3]
        label = (i // 3) % 2
        rel = processed.array_relpath(split, label, f"p{i}")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, np.full((size, size), i, np.uint8))
        rows.append({"patientId": f"p{i}", "split": split, "label": label, "class": "",
                     "view_position": "PA", "sex": "F", "age": 40,
                     "boxes": json.dumps([[1, 1, 2, 2]] if label else []),
                     "source_file": f"p{i}.dcm", "array_file": rel})
    pd.DataFrame(rows, columns=processed.MANIFEST_COLUMNS).to_csv(root / processed.MANIFEST_NAME, index=False)
    (root / processed.STATS_NAME).write_text(json.dumps({"mean": 0.5, "std": 0.25}))


def test_processed_contract_reads_back(tmp_path):
    _write_processed(tmp_path)
    manifest = processed.read_manifest(tmp_path)
    assert manifest.loc[manifest.label == 1, "boxes"].iloc[0] == [[1, 1, 2, 2]]
    split = processed.load_split(tmp_path, "train", manifest)
    assert split.images.dtype == np.uint8 and split.images.shape == (2, 8, 8)
    assert list(split.labels) == [0, 1]
    assert processed.read_stats(tmp_path)["std"] == 0.25


def test_processed_errors_say_what_to_run(tmp_path):
    with pytest.raises(ProcessedDataError, match="scripts/preprocess.py"):
        processed.read_manifest(tmp_path)
    with pytest.raises(ProcessedDataError, match="scripts/preprocess.py"):
        processed.read_stats(tmp_path)
    _write_processed(tmp_path)
    (tmp_path / "train" / "0" / "p0.npy").unlink()
    with pytest.raises(ProcessedDataError, match="p0.npy"):
        processed.load_split(tmp_path, "train")
    with pytest.raises(ProcessedDataError, match="unknown split"):
        processed.load_split(tmp_path, "holdout")


def test_data_source_reads_stats_json_blocks():
    from pneumocam.processed import DataSource

    demo = DataSource.from_json({"kind": "demo", "path": "data/demo", "labels_sha256": "ab"})
    assert demo.is_demo and demo.maybe_synthetic and demo.known and demo.path == "data/demo"
    assert demo.to_json() == {"kind": "demo", "path": "data/demo", "labels_sha256": "ab"}
    real = DataSource.from_json({"kind": "rsna", "path": None})
    assert not real.is_demo and not real.maybe_synthetic
    mixed = DataSource.from_json({"kind": "other"})
    assert not mixed.is_demo and mixed.maybe_synthetic
    for unknown in (None, {}, {"kind": "martian"}, "demo"):
        source = DataSource.from_json(unknown)
        assert source.kind == "unknown" and not source.known and not source.is_demo
        assert source.maybe_synthetic  # unsure: figures are stamped


def test_provenance_names_the_code_s_commit_when_outputs_live_elsewhere(project_root):
    import subprocess

    from helpers import REPO

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the tests do not run from a git checkout")
    assert paths.repo_root() == project_root and paths.code_root() == REPO
    assert provenance.provenance()["git"]["commit"] == head.stdout.strip()
