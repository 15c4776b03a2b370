"""MobileNetV2 (torchvision). Units: the 17 inverted-residual blocks ``features.1`` .. ``features.17``.

A shuffle goes before the 3x3 depthwise conv block (and before the skip of residual blocks);
conv1x1 removes the depthwise conv with its BN and ReLU6 (a 1x1 depthwise conv is only a
per-channel scale), down-sampling where it was strided. ``model.stem=cifar`` (auto up to 64 px)
makes the first conv stride 1.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenet_v2

from spatialprobe.config.schema import resolve_stem
from spatialprobe.methods.conv1x1 import pool2x2
from spatialprobe.models.base import Family

#: Read without importing this module by spatialprobe.config.facts (the torch-free config checks).
FACTS = {
    "mobilenet_v2": {"units": 17, "narrowest": ["features.1", 16], "width_divisor": 8, "strided_maxpool": "never"},
}


def _depthwise_index(block: nn.Module) -> int:
    for i, layer in enumerate(block.conv):
        conv = layer[0] if isinstance(layer, nn.Sequential) else layer
        if isinstance(conv, nn.Conv2d) and conv.groups > 1:
            return i
    raise ValueError("inverted residual block without a depthwise conv")


class ShuffledSkipResidual(nn.Module):
    """An inverted residual block whose skip input passes through ``skip`` (a shuffle)."""

    def __init__(self, block: nn.Module, skip: nn.Module):
        super().__init__()
        self.block, self.skip = block, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block.conv(x)


class MobileNetV2Family(Family):
    archs = tuple(FACTS)

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        body = mobilenet_v2(num_classes=num_classes, width_mult=float(cfg.width))
        if resolve_stem(cfg.get("stem", "auto"), image_size) == "cifar":
            body.features[0][0].stride = (1, 1)
        return body

    def unit_names(self, body: nn.Module) -> list[str]:
        return [f"features.{i}" for i in range(1, 18)]

    def shuffle_sites(self, unit: nn.Module) -> list[tuple[str, str]]:
        return [(f"conv.{_depthwise_index(unit)}", "before")]

    def with_skip_op(self, unit: nn.Module, op: nn.Module) -> nn.Module:
        return ShuffledSkipResidual(unit, op) if unit.use_res_connect else unit

    def conv1x1(self, unit: nn.Module, downsample: str) -> nn.Module:
        i = _depthwise_index(unit)
        stride = unit.conv[i][0].stride[0]
        if stride == 1:
            unit.conv[i] = nn.Identity()
        elif downsample == "stride":
            unit.conv[i] = nn.AvgPool2d(1, stride=stride)  # keep the stride: take every other position
        else:
            unit.conv[i] = pool2x2(downsample, stride)
        return unit

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return body.features(x)

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return body.classifier(z)


FAMILY = MobileNetV2Family()
