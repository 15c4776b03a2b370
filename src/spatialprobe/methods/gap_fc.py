"""gap_fc: global average pooling before the first modified unit, fully connected layers after.

Past the pooling point every map is 1x1, so a kxk conv c_in -> c_out *is* a fully connected
layer c_in -> c_out and BatchNorm2d is BatchNorm1d. The modules below are exactly those
(``nn.Linear`` / ``nn.BatchNorm1d`` subclasses) but accept the (N, C, 1, 1) tensors torchvision's
forwards pass along, so every architecture's own forward keeps working. Pools in between disappear.
"""

from __future__ import annotations

import torch
from torch import nn

#: This method's kind, read without importing this module by spatialprobe.config.facts.
KIND = "gap_fc"


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """(N, C, H, W) -> (N, C, 1, 1): an adaptive average pool to 1x1 (so measurements know it as one)."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Linear1x1(nn.Linear):
    """A fully connected layer applied to (N, C, 1, 1) maps (or (N, C) vectors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return super().forward(x.flatten(1))[:, :, None, None]
        return super().forward(x)


class BatchNorm1x1(nn.BatchNorm1d):
    """BatchNorm1d applied to (N, C, 1, 1) maps (or (N, C) vectors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return super().forward(x.flatten(1))[:, :, None, None]
        return super().forward(x)


def fc_equivalent(module: nn.Module) -> nn.Module | None:
    """The fully connected counterpart of a spatial module, or None if it needs none."""
    if isinstance(module, nn.Conv2d):
        if module.groups == 1:
            fc = Linear1x1(module.in_channels, module.out_channels, bias=module.bias is not None)
            nn.init.kaiming_normal_(fc.weight, mode="fan_out", nonlinearity="relu")
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)
            return fc
        # a grouped (e.g. depthwise) conv on a 1x1 map: its FC equivalent is the grouped 1x1 conv
        conv = nn.Conv2d(module.in_channels, module.out_channels, 1, groups=module.groups, bias=module.bias is not None)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        return conv
    if isinstance(module, nn.BatchNorm2d):
        return BatchNorm1x1(module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine,
                            track_running_stats=module.track_running_stats)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return nn.Identity()
    return None
