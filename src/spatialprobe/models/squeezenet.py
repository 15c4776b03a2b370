"""SqueezeNet 1.0 (torchvision). Units: the 8 fire modules.

A shuffle goes on the squeezed map, the input of both expand convs, so the 1x1 expand branch
cannot carry positions around it; conv1x1 turns the 3x3 expand conv into 1x1. ``model.width``
scales every conv (read off torchvision's modules, not re-typed); ``model.stem=cifar`` (auto up
to 64 px) replaces the 7x7 stride-2 first conv with a 3x3 stride-1 one.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import squeezenet1_0
from torchvision.models.squeezenet import Fire

from spatialprobe.config.schema import resolve_stem, scaled
from spatialprobe.models.base import Family

#: Read without importing this module by spatialprobe.config.facts (the torch-free config checks).
FACTS = {
    "squeezenet1_0": {"units": 8, "narrowest": ["the squeeze convs of the first two fire modules", 16],
                      "strided_maxpool": "always"},
}


class SqueezeNetFamily(Family):
    archs = tuple(FACTS)

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        width = float(cfg.width)
        body = squeezenet1_0(num_classes=num_classes)
        stem = resolve_stem(cfg.get("stem", "auto"), image_size)
        first = body.features[0]
        if width != 1.0 or stem == "cifar":
            k, s, p = (3, 1, 1) if stem == "cifar" else (first.kernel_size, first.stride, first.padding)
            body.features[0] = nn.Conv2d(3, scaled(first.out_channels, width), k, s, p)
        if width != 1.0:
            for i, m in enumerate(body.features):
                if isinstance(m, Fire):
                    body.features[i] = Fire(scaled(m.squeeze.in_channels, width), scaled(m.squeeze.out_channels, width),
                                            scaled(m.expand1x1.out_channels, width),
                                            scaled(m.expand3x3.out_channels, width))
            body.classifier[1] = nn.Conv2d(scaled(body.classifier[1].in_channels, width), num_classes, 1)
        # torchvision's initialisation: Kaiming uniform convs, N(0, 0.01) for the final conv
        for m in body.modules():
            if isinstance(m, nn.Conv2d):
                if m is body.classifier[1]:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        return body

    def unit_names(self, body: nn.Module) -> list[str]:
        return [f"features.{i}" for i, m in enumerate(body.features) if isinstance(m, Fire)]

    def shuffle_sites(self, unit: nn.Module) -> list[tuple[str, str]]:
        return [("squeeze_activation", "after")]

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return body.features(x)

    def pool(self, body: nn.Module, f: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        # SqueezeNet classifies with a 1x1 conv before pooling; on the pooled latent that conv is
        # the same linear map, so the head acts on z as a 1x1 map.
        return torch.flatten(body.classifier(z[:, :, None, None]), 1)


FAMILY = SqueezeNetFamily()
