"""What every architecture family provides, and the network wrapper that exposes the seam.

An architecture *family* (VGG, ResNet, ...) knows how to build its torchvision model for a
data set (width multiplier, 32 px stem), where its modifiable *units* are (attribute paths, in
forward order), and how to split its forward into ``forward_features`` (the last spatial map),
``pool`` (the pooled latent) and ``forward_head``. Methods (the surgery) never look inside a
family; families never know about methods.
"""

from __future__ import annotations

import torch
from torch import nn


def init_like_torchvision(module: nn.Module, linear_std: float | None = None) -> None:
    """Re-initialise ``module`` the way torchvision's classification models do.

    Convs: Kaiming normal (fan_out, ReLU), zero bias. Norm layers: weight 1, bias 0, fresh running
    statistics. Linear: PyTorch's default, or N(0, ``linear_std``) with zero bias (VGG uses 0.01).
    Also used after building on the meta device (``to_empty``), so it must touch every tensor.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm):
            m.reset_parameters()
        elif isinstance(m, nn.Linear):
            if linear_std is None:
                m.reset_parameters()
            else:
                nn.init.normal_(m.weight, 0.0, linear_std)
                nn.init.zeros_(m.bias)


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


class Family:
    """Base class of an architecture family (see module docstring)."""

    archs: tuple[str, ...] = ()

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        raise NotImplementedError

    def unit_names(self, body: nn.Module) -> list[str]:
        raise NotImplementedError

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, body: nn.Module, f: torch.Tensor) -> torch.Tensor:
        """Global average pooling to a (N, C) latent; families may override."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1) if f.dim() == 4 else f

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SpatialNet(nn.Module):
    """A torchvision model (``body``) plus the seam the science needs.

    ``forward`` is the torchvision model's own forward, so in-place surgery on ``body`` is all it
    takes to change the network; ``forward_features`` / ``pool`` / ``forward_head`` expose the
    last spatial map and the pooled latent for ranking, switch-off and AugShift.
    """

    def __init__(self, body: nn.Module, family: Family, arch: str):
        super().__init__()
        self.body = body
        self.family = family
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.family.forward_features(self.body, x)

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        return self.family.pool(self.body, f)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.family.forward_head(self.body, z)

    def unit_names(self) -> list[str]:
        return self.family.unit_names(self.body)

    def extra_repr(self) -> str:
        return f"arch={self.arch}, units={len(self.unit_names())}"
