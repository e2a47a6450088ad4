"""The classifier: torchvision ResNet-18, one input channel, one logit.

torchvision's module names are kept (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``)
so that CAM code can hook ``layer4`` and read ``fc.weight`` directly.

Two architectures (:data:`ARCHS`), chosen by the training flag ``--arch`` and recorded in
``weights/<run>/config.json`` (``settings.arch``, read back by :func:`arch_from_config`):

- ``resnet18``: torchvision's network, output stride 32: a 7x7 CAM at 224 px;
- ``resnet18-os16``: the same weights' shapes, but ``layer4`` keeps the resolution of
  ``layer3`` (stride 1 in its first block, dilation 2 in its 3x3 convolutions, as DeepLab
  does): output stride 16, a 14x14 CAM at 224 px; ``layer4`` runs on 4x the positions
  (3.0 G against 1.7 G multiply-adds per image in all, counted with torch.utils.flop_counter).
  torchvision's ``replace_stride_with_dilation`` only exists for Bottleneck blocks, so
  :func:`dilate_layer4` edits the BasicBlocks in place. The state_dict keys and shapes are
  those of ``resnet18``: only the config tells the two apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from .errors import CheckpointError, ConfigError

CAM_LAYER = "layer4"  #: the last convolutional stage; its 512 maps feed avgpool -> fc
DEFAULT_ARCH = "resnet18"
#: architecture name -> output stride (input pixels per CAM cell)
ARCHS = {"resnet18": 32, "resnet18-os16": 16}


def check_arch(arch: str, source: str = "--arch") -> str:
    """``arch`` when it is one of :data:`ARCHS`.

    Raises:
        ConfigError: naming ``source`` (the flag or the file) and the allowed values.
    """
    if arch not in ARCHS:
        raise ConfigError(f"{source} {arch!r}: expected one of {', '.join(ARCHS)}.")
    return arch


def arch_from_config(config: Mapping[str, Any], source: str = "config.json") -> str:
    """The architecture a run's ``config.json`` records: ``settings.arch`` (else
    ``model.arch``); a config written before the setting existed means ``resnet18``.

    Raises:
        ConfigError: the recorded value is not one of :data:`ARCHS`.
    """
    settings = config.get("settings") if isinstance(config.get("settings"), Mapping) else {}
    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    arch = settings.get("arch", model.get("arch", DEFAULT_ARCH))
    return check_arch(str(arch), f"{source}: arch")


def dilate_layer4(model: nn.Module) -> nn.Module:
    """Turn ``model.layer4`` (torchvision BasicBlocks) to stride 1 and dilation 2, in place.

    The first block's 3x3 conv1 and its 1x1 downsample go from stride 2 to 1; every 3x3 conv of
    the stage gets dilation 2 and padding 2, so the receptive field grows as before while the
    maps stay at ``layer3``'s resolution (H/16 x W/16). Parameter shapes are unchanged.
    """
    first = model.layer4[0]
    first.conv1.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for block in model.layer4:
        for conv in (block.conv1, block.conv2):
            conv.dilation, conv.padding = (2, 2), (2, 2)
    return model


def build_model(pretrained: bool = False, arch: str = DEFAULT_ARCH) -> nn.Module:
    """ResNet-18 for 1-channel input of shape (N, 1, H, W) returning logits of shape (N, 1).

    Args:
        arch: one of :data:`ARCHS`: ``resnet18`` (layer4 maps H/32 x W/32) or
            ``resnet18-os16`` (H/16 x W/16, :func:`dilate_layer4`).
        pretrained: load torchvision's ImageNet weights (downloaded on first use) and sum
            conv1's RGB kernels into one channel; ``fc`` stays freshly initialised. Raises
            :class:`CheckpointError` with the fix when the download is impossible (offline).
            The default, random initialisation, matches the original study.
    """
    check_arch(arch)
    weights = None
    if pretrained:
        weights = ResNet18_Weights.IMAGENET1K_V1
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # URLError, HTTPError, socket errors: all mean "no download"
            raise CheckpointError(
                f"--pretrained needs torchvision's ImageNet ResNet-18 weights ({weights.url}), "
                f"which could not be downloaded: {exc}. Run once with internet access (the file "
                "is cached under ~/.cache/torch/hub/checkpoints/), or train without --pretrained."
            ) from exc
    model = resnet18(weights=None)
    if pretrained:
        model.load_state_dict(state)
    rgb_kernels = model.conv1.weight.data  # (64, 3, 7, 7)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if pretrained:
        model.conv1.weight.data.copy_(rgb_kernels.sum(dim=1, keepdim=True))
    model.fc = nn.Linear(model.fc.in_features, 1)
    if arch == "resnet18-os16":
        dilate_layer4(model)  # after loading: ImageNet weights fit the dilated stage as well
    return model


WRAPPER_PREFIXES = ("module.", "_orig_mod.")  #: DataParallel/DDP and torch.compile key prefixes
MAX_NAMES = 3  #: key names quoted in a mismatch message


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without a prefix that every key shares and a wrapper adds.

    ``module.`` comes from ``DataParallel``/``DistributedDataParallel``, ``_orig_mod.`` from
    ``torch.compile``; they can nest (``_orig_mod.module.``), so prefixes are removed while all
    keys carry one. A prefix that only some keys have is left alone (that is a real mismatch).
    """
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMES])
    return shown + (", ..." if len(keys) > MAX_NAMES else "")


def _common_prefix(keys: list[str], expected: dict[str, torch.Tensor]) -> str | None:
    """The first dotted component all ``keys`` share when removing it gives model keys, else None."""
    prefix = keys[0].split(".", 1)[0] + "."
    if all(k.startswith(prefix) and k[len(prefix):] in expected for k in keys):
        return prefix
    return None


def describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """A one-line summary of how ``state`` differs from ``model.state_dict()``, or None if it fits.

    Counts missing and unexpected keys and shape mismatches, quotes the first few names and
    guesses the likely cause; never the full key lists (a ResNet-18 has 122 keys).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_names(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (checkpoint vs model: {_names(shapes)})")
    conv1 = state.get("conv1.weight")
    fc = state.get("fc.weight")
    prefix = _common_prefix(unexpected, expected) if unexpected else None
    if prefix:
        cause = f"the keys carry the prefix {prefix!r} (saved from a wrapper around the model)"
    elif unexpected:
        cause = "another architecture than ResNet-18 (it has layers this model lacks)"
    elif conv1 is not None and conv1.ndim == 4 and conv1.shape[1] != 1:
        cause = f"a {conv1.shape[1]}-channel model (e.g. torchvision's RGB ImageNet ResNet-18)"
    elif fc is not None and fc.ndim == 2 and fc.shape[0] != 1:
        cause = f"a classifier with {fc.shape[0]} outputs instead of one logit"
    elif missing:
        cause = "a partial state_dict (e.g. only the backbone or only the head)"
    else:
        cause = "another architecture than this project's ResNet-18"
    return "; ".join(parts) + f". Likely cause: {cause}"


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; a key or shape mismatch becomes a :class:`CheckpointError`.

    A ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile) prefix on every key is
    stripped first, so such checkpoints load as they are. The error message stays one short line
    (counts and a few names), however many keys differ.
    """
    state = strip_wrapper_prefixes(dict(state))
    problem = describe_mismatch(model, state)
    if problem is None:
        try:
            model.load_state_dict(state, strict=True)
            return
        except RuntimeError as exc:  # anything describe_mismatch did not foresee
            problem = str(exc).splitlines()[0][:200]
    raise CheckpointError(
        f"{source} does not fit a 1-channel ResNet-18 with one logit: {problem}. "
        "Was it written by this project's training scripts (weights/<run>/best.pth)?"
    )
