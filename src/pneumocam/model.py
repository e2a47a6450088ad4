"""The classifier: torchvision ResNet-18, one input channel, one logit.

torchvision's module names are kept (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``)
so that CAM code can hook ``layer4`` and read ``fc.weight`` directly.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from .errors import CheckpointError

CAM_LAYER = "layer4"  #: the last convolutional stage; its 512 maps feed avgpool -> fc


def build_model(pretrained: bool = False) -> nn.Module:
    """ResNet-18 for 1-channel input of shape (N, 1, H, W) returning logits of shape (N, 1).

    Args:
        pretrained: load torchvision's ImageNet weights (downloaded on first use) and sum
            conv1's RGB kernels into one channel; ``fc`` stays freshly initialised. Raises
            :class:`CheckpointError` with the fix when the download is impossible (offline).
            The default, random initialisation, matches the original study.
    """
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
    return model


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; a key or shape mismatch becomes a :class:`CheckpointError`."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source} does not fit a 1-channel ResNet-18 with one logit ({exc}). "
            "Was it written by this project's training scripts (weights/<run>/best.pth)?"
        ) from exc
