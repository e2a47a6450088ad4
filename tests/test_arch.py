"""The output-stride-16 ResNet-18 (``--arch resnet18-os16``): its shapes, the flag, and the
architecture recorded in config.json and read back by every later stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import run_script

from pneumocam.cam import class_activation_map, compute_cams
from pneumocam.errors import CheckpointError, ConfigError
from pneumocam.model import ARCHS, arch_from_config, build_model, load_state_dict_checked
from pneumocam.run_state import check_resume_settings
from pneumocam.train import TrainConfig, TrainSettings, train, validate_config


@pytest.mark.parametrize(("arch", "side"), [("resnet18", 7), ("resnet18-os16", 14)])
def test_cam_side_at_224_px(arch, side):
    model = build_model(arch=arch).eval()
    logits, cam = class_activation_map(model, torch.randn(1, 1, 224, 224))
    assert cam.shape == (1, side, side)
    # the CAM identity (spatial mean + bias = logit) holds for the dilated stage too
    torch.testing.assert_close(cam.mean((1, 2)) + model.fc.bias, logits, rtol=1e-4, atol=1e-4)


def test_os16_keeps_the_weights_layout_and_dilates_layer4_only():
    plain, os16 = build_model(), build_model(arch="resnet18-os16")
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in os16.state_dict().items()}
    assert os16.layer4[0].conv1.stride == (1, 1) and os16.layer4[0].downsample[0].stride == (1, 1)
    assert all(b.conv1.dilation == b.conv2.dilation == (2, 2) for b in os16.layer4)
    assert os16.layer3[0].conv1.stride == (2, 2) and os16.layer3[0].conv1.dilation == (1, 1)
    # library methods see the finer map as well
    assert compute_cams(os16, torch.randn(1, 1, 64, 64), "gradcam").low.shape == (1, 4, 4)
    with pytest.raises(ConfigError, match="resnet18, resnet18-os16"):
        build_model(arch="resnet50")


def test_arch_from_config_reads_settings_and_defaults_old_configs():
    assert arch_from_config({}) == "resnet18"  # written before the setting existed
    assert arch_from_config({"model": {"arch": "resnet18"}}) == "resnet18"
    assert arch_from_config({"settings": {"arch": "resnet18-os16"},
                             "model": {"arch": "resnet18"}}) == "resnet18-os16"
    with pytest.raises(ConfigError) as err:
        arch_from_config({"settings": {"arch": "vgg"}}, "weights/x/config.json")
    assert "weights/x/config.json" in str(err.value) and "resnet18-os16" in str(err.value)


def test_validate_config_and_resume_check_know_the_arch():
    with pytest.raises(ConfigError, match="--arch 'resnet34'"):
        validate_config(TrainConfig(arch="resnet34"))
    validate_config(TrainConfig(arch="resnet18-os16"))
    old = {"sampler": "balanced"}  # a checkpoint written before runs recorded their arch
    check_resume_settings(old, {"sampler": "balanced", "arch": "resnet18"}, Path("last.pth"))
    with pytest.raises(CheckpointError, match="arch: checkpoint 'resnet18', now 'resnet18-os16'"):
        check_resume_settings(old, {"sampler": "balanced", "arch": "resnet18-os16"},
                              Path("last.pth"))


def test_wrong_arch_flag_exits_2_with_the_choices(tiny_root):
    result = run_script("train_balanced.py", "--arch", "resnet50", "--epochs", "1",
                        root=tiny_root)
    assert result.returncode == 2
    assert "--arch" in result.stderr and all(a in result.stderr for a in ARCHS)
    assert not (tiny_root / "weights").exists()  # refused before any work


def test_os16_run_round_trips_through_config_and_load_run(tiny_root):
    from pneumocam.predict import load_run

    result = train(TrainConfig(run_name="os16", arch="resnet18-os16", epochs=1, batch_size=16,
                               device="cpu", n_boot=20, progress=False))
    config = json.loads((result.weights_dir / "config.json").read_text())
    assert config["settings"]["arch"] == "resnet18-os16" == config["model"]["arch"]
    assert config["model"]["output_stride"] == 16
    assert TrainSettings.from_json(config["settings"]).arch == "resnet18-os16"

    run = load_run(result.weights_dir / "best.pth", device="cpu")
    assert run.model.layer4[0].conv1.stride == (1, 1)
    x = torch.randn(2, 1, 32, 32)
    assert compute_cams(run.model, x).low.shape == (2, 2, 2)  # 32 px / 16; resnet18 gives 1x1

    # a settings block from before the setting existed reads as resnet18
    old = {k: v for k, v in config["settings"].items() if k != "arch"}
    assert TrainSettings.from_json(old).arch == "resnet18"
    # the same weights in a resnet18 would load (same keys) but give other maps: only the
    # config tells them apart, so load_run must have used it
    plain = build_model()
    load_state_dict_checked(plain, run.model.state_dict(), "os16")
    assert compute_cams(plain.eval(), x).low.shape == (2, 1, 1)
