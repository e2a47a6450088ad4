"""Checkpoint loading: each kind of bad file gets its own one-line reason; wrapped state_dicts load."""

from __future__ import annotations

import os

import pytest
import torch
import torchvision

from pneumocam import checkpoint
from pneumocam.errors import CheckpointError
from pneumocam.model import build_model, load_state_dict_checked


class _Marker:
    """A plain class instance: torch.save pickles it by reference to this module."""

    def __init__(self) -> None:
        self.value = 1


def _reason(path) -> str:
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_empty_file_is_called_empty(tmp_path):
    path = tmp_path / "best.pth"
    path.write_bytes(b"")
    message = _reason(path)
    assert "0 bytes: the file is empty" in message and "pickled code" not in message
    assert "()" not in message


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    for i, head in enumerate((b"\xfd\x37", b"PK\x03\x04", b"\x80")):  # no magic, zip, pickle
        path = tmp_path / f"random{i}.pth"
        path.write_bytes(head + os.urandom(4096))
        message = _reason(path)
        assert "not a PyTorch checkpoint" in message or "not a readable PyTorch checkpoint" in message
        assert "pickled code" not in message


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "best.pth"
    path.write_text("version https://git-lfs.github.com/spec/v1\n")
    assert "not a PyTorch checkpoint" in _reason(path)


def test_pickled_class_instance_is_refused_as_code(tmp_path):
    path = tmp_path / "best.pth"
    torch.save({"model": _Marker()}, path)
    message = _reason(path)
    assert "refused" in message and "would execute pickled code" in message
    assert "_Marker" in message and len(message) < 400  # torch's 20-line advice is not echoed


def test_truncated_real_checkpoint_says_truncated(tmp_path):
    path = checkpoint.save_checkpoint(build_model().state_dict(), tmp_path / "best.pth")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _reason(path)
    assert "truncated" in message and "pickled code" not in message
    assert len(message) < 400


def test_folder_is_not_called_missing(tmp_path):
    message = _reason(tmp_path)
    assert "is a folder" in message and "not found" not in message


def test_non_finite_weights_are_refused(tmp_path):
    state = build_model().state_dict()
    checkpoint.require_finite(state, "best.pth")  # a fresh model is fine
    state["layer4.1.bn2.weight"][3] = float("nan")
    state["fc.bias"][0] = float("inf")
    with pytest.raises(CheckpointError, match=r"best.pth: holds NaN/inf values .*retrain with a "
                                              r"lower --lr"):
        checkpoint.require_finite(state, "best.pth")


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_are_stripped(prefix):
    source = build_model()
    state = {prefix + k: v for k, v in source.state_dict().items()}
    model = build_model()
    load_state_dict_checked(model, state, "ddp.pth")
    assert torch.equal(model.conv1.weight, source.conv1.weight)


def test_mismatch_message_is_short_and_names_the_cause():
    cases = {
        "backbone": ({"backbone." + k: v for k, v in build_model().state_dict().items()},
                     "prefix 'backbone.'"),
        "rgb": (torchvision.models.resnet18().state_dict(), "3-channel"),
        "resnet50": (torchvision.models.resnet50().state_dict(), "another architecture"),
        "partial": ({k: v for k, v in build_model().state_dict().items()
                     if not k.startswith("fc.")}, "partial"),
    }
    for name, (state, cause) in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_state_dict_checked(build_model(), state, f"{name}.pth")
        message = str(info.value)
        assert message.startswith(f"{name}.pth does not fit"), message
        assert cause in message and len(message) < 700 and "\n" not in message, message
