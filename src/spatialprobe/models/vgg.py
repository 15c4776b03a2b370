"""VGG-16 with BatchNorm (torchvision). Units: the 13 3x3 convs of ``features``.

The classifier reads the globally pooled last map (a ``512*width`` vector): Linear to
``fc_width``, ReLU, dropout, Linear to ``fc_width``, ReLU, dropout, Linear to the classes. All five
max-pools are kept, so a 32 px input ends in a 1x1 map.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import VGG, cfgs, make_layers

from spatialprobe.config.schema import scaled
from spatialprobe.models.base import Family, init_like_torchvision

#: Read without importing this module by spatialprobe.config.facts (the torch-free config checks).
FACTS = {
    "vgg16_bn": {"units": 13, "narrowest": ["features.0, the first conv", 64], "strided_maxpool": "always"},
}



class VGGFamily(Family):
    archs = tuple(FACTS)

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        width, fc, dropout = float(cfg.width), int(cfg.get("fc_width", 4096)), float(cfg.get("dropout", 0.5))
        layout = [v if v == "M" else scaled(v, width) for v in cfgs["D"]]
        # Build torchvision's VGG on the meta device: its 25088x4096 classifier is replaced anyway,
        # so nothing is allocated or initialised twice. Real tensors come with to_empty + init.
        with torch.device("meta"):
            body = VGG(make_layers(layout, batch_norm=True), num_classes=num_classes, init_weights=False)
            last = layout[-2]
            body.avgpool = nn.AdaptiveAvgPool2d(1)
            body.classifier = nn.Sequential(
                nn.Linear(last, fc), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(fc, fc), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(fc, num_classes),
            )
        body = body.to_empty(device="cpu")
        # torchvision draws its 4096-wide classifier from N(0, 0.01); the same std on a narrow
        # classifier (fc_width 256 at CPU scale) shrinks the logits and every gradient ~60x at
        # initialisation and training crawls. Keep torchvision's per-layer gain instead: 0.01 at 4096.
        init_like_torchvision(body, linear_std=0.01 * (4096 / fc) ** 0.5)
        return body

    def unit_names(self, body: nn.Module) -> list[str]:
        return [f"features.{i}" for i, m in enumerate(body.features) if isinstance(m, nn.Conv2d)]

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return body.features(x)

    def pool(self, body: nn.Module, f: torch.Tensor) -> torch.Tensor:
        return torch.flatten(body.avgpool(f), 1)

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return body.classifier(z)


FAMILY = VGGFamily()
