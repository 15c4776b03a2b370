"""The one-hidden-layer perceptron of S0 section 4.1, the comparator for a network without any
spatial structure: "a one-hidden-layer perceptron (with 512 hidden units and ReLU activation) on
CIFAR100 (25.61%)". The image is flattened (3 x s x s values), then Linear -> ReLU -> Linear.

It has no modifiable units (K = 0 only). ``forward_features`` is the hidden layer, which is also
the pooled latent; ``forward_head`` is the output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from spatialprobe.config.schema import scaled
from spatialprobe.models.base import Family

#: Read without importing this module by spatialprobe.config.facts (the torch-free config checks).
FACTS = {
    "mlp": {"units": 0, "narrowest": ["the hidden layer", 512], "strided_maxpool": "never"},
}


class MLPFamily(Family):
    archs = tuple(FACTS)

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        hidden = scaled(int(cfg.get("hidden", 512)), float(cfg.width))
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, num_classes))  # PyTorch's default Linear initialisation

    def unit_names(self, body: nn.Module) -> list[str]:
        return []

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return body[:3](x)

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        return body[3](z)


FAMILY = MLPFamily()
