"""ResNet-18/50/152 (torchvision). Units: the residual blocks in forward order.

``model.stem`` (choices: ``spatialprobe.config.schema.STEMS``): ``imagenet`` keeps torchvision's 7x7 stride-2 conv + max-pool; ``cifar`` uses a
3x3 stride-1 conv and no max-pool (32 px inputs end in a 4x4 map); ``imagenet_nopool`` keeps the
7x7 stride-2 conv without the max-pool; ``auto`` picks ``cifar`` up to 64 px, else ``imagenet``.
``model.width`` scales every stage's channels (torchvision's own ``_make_layer`` builds them).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from spatialprobe.config.schema import resolve_stem, scaled
from spatialprobe.models.base import Family, init_like_torchvision

#: Read without importing this module by spatialprobe.config.facts (the torch-free config checks).
FACTS = {
    "resnet18": {"units": 8, "narrowest": ["conv1 and layer1", 64], "strided_maxpool": "imagenet_stem"},
    "resnet34": {"units": 16, "narrowest": ["conv1 and layer1", 64], "strided_maxpool": "imagenet_stem"},
    "resnet50": {"units": 16, "narrowest": ["conv1 and layer1", 64], "strided_maxpool": "imagenet_stem"},
    "resnet101": {"units": 33, "narrowest": ["conv1 and layer1", 64], "strided_maxpool": "imagenet_stem"},
    "resnet152": {"units": 50, "narrowest": ["conv1 and layer1", 64], "strided_maxpool": "imagenet_stem"},
}

LAYOUTS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
class ResNetFamily(Family):
    """Units are blocks. A shuffle goes before each 3x3 conv (both in a basic block, the middle
    one in a bottleneck) and, with its own permutation, before the skip branch, so the block
    cannot route positions around it."""

    archs = tuple(FACTS)
    skip_branch = "downsample"

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        block, layers = LAYOUTS[arch]
        width = float(cfg.width)
        stem = resolve_stem(cfg.get("stem", "auto"), image_size)
        planes = [scaled(p, width) for p in (64, 128, 256, 512)]
        with torch.device("meta"):  # structure from torchvision; tensors are materialised below
            body = ResNet(block, layers, num_classes=num_classes)
            if width != 1.0:
                body.inplanes = planes[0]
                body.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
                body.bn1 = nn.BatchNorm2d(planes[0])
                for i, (p, n) in enumerate(zip(planes, layers, strict=True)):
                    setattr(body, f"layer{i + 1}", body._make_layer(block, p, n, stride=1 if i == 0 else 2))
                body.fc = nn.Linear(planes[3] * block.expansion, num_classes)
            if stem == "cifar":
                body.conv1 = nn.Conv2d(3, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
            if stem in ("cifar", "imagenet_nopool"):
                body.maxpool = nn.Identity()
        body = body.to_empty(device="cpu")
        init_like_torchvision(body)
        return body

    def unit_names(self, body: nn.Module) -> list[str]:
        return [f"layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(body, f"layer{i}")))]

    def with_skip_op(self, unit: nn.Module, op: nn.Module) -> nn.Module:
        # torchvision's blocks compute identity = downsample(x) when downsample is set
        unit.downsample = op if unit.downsample is None else nn.Sequential(op, unit.downsample)
        return unit

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = body.maxpool(body.relu(body.bn1(body.conv1(x))))
        return body.layer4(body.layer3(body.layer2(body.layer1(x))))

    def pool(self, body: nn.Module, f: torch.Tensor) -> torch.Tensor:
        return torch.flatten(body.avgpool(f), 1)

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return body.fc(z)


FAMILY = ResNetFamily()
