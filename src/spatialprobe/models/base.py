"""What every architecture family provides, and the network wrapper that exposes the seam.

An architecture *family* (VGG, ResNet, ...) knows how to build its torchvision model for a
data set (width multiplier, 32 px stem), where its modifiable *units* are (attribute paths, in
forward order), and how to split its forward into ``forward_features`` (the last spatial map),
``pool`` (the pooled latent) and ``forward_head``.

Methods never look inside a family. The other way round, a family answers the three questions the
surgery has about one of its units, because only the family knows the unit's insides: where a
parameter-free op goes (``shuffle_sites``), how it reaches the skip branch (``with_skip_op``) and
what the unit's 1x1 version is (``conv1x1``, assembled from the building blocks of
:mod:`spatialprobe.methods.conv1x1`). Families know no method by name and hold no method registry:
the surgery (:mod:`spatialprobe.surgery`) decides which method goes where.
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


class Family:
    """Base class of an architecture family (see module docstring).

    Besides building, a family answers the surgery's questions about one unit: where a
    position/channel shuffle goes (``shuffle_sites``), how a shuffle reaches the skip branch of a
    residual unit (``with_skip_op``), and what the unit's 1x1 version is (``conv1x1``). Defaults
    fit plain units: shuffle before every kxk conv, no skip branch, every kxk conv made 1x1.
    """

    archs: tuple[str, ...] = ()  # their unit counts: spatialprobe.config.schema.UNIT_COUNTS
    #: attribute name of a unit's skip projection (ignored by the receptive-field walk)
    skip_branch: str | None = None

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        raise NotImplementedError

    def unit_names(self, body: nn.Module) -> list[str]:
        raise NotImplementedError

    def shuffle_sites(self, unit: nn.Module) -> list[tuple[str, str]]:
        """(path inside the unit, "before" | "after"): where a shuffle op is inserted."""
        return [(name, "before") for name, m in unit.named_modules()
                if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]

    def with_skip_op(self, unit: nn.Module, op: nn.Module) -> nn.Module:
        """The unit with ``op`` applied to the input of its skip branch (no skip branch: unchanged)."""
        return unit

    def conv1x1(self, unit: nn.Module, downsample: str) -> nn.Module:
        """The unit with every kxk conv made 1x1 (and its skip branch down-sampled the same way)."""
        from spatialprobe.methods.conv1x1 import pooled_skip, to_1x1

        convs = [(name, m) for name, m in unit.named_modules() if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]
        for name, conv in convs:
            if name == "":
                return to_1x1(conv, downsample)
            unit.set_submodule(name, to_1x1(conv, downsample))
        skip = getattr(unit, self.skip_branch, None) if self.skip_branch else None
        if isinstance(skip, nn.Sequential) and convs:
            setattr(unit, self.skip_branch, pooled_skip(skip, downsample))
        return unit

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def drop_classifier(self, body: nn.Module) -> None:
        """Remove what only ``forward_head`` uses (a backbone for detection): torchvision's ``fc`` / ``classifier``."""
        for name in ("fc", "classifier"):
            if isinstance(getattr(body, name, None), nn.Module):
                setattr(body, name, nn.Identity())

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
        # unit paths are fixed when the baseline is built: surgery replaces modules at these paths
        self._unit_names = family.unit_names(body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.family.forward_features(self.body, x)

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        return self.family.pool(self.body, f)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.family.forward_head(self.body, z)

    def unit_names(self) -> list[str]:
        return list(self._unit_names)

    def extra_repr(self) -> str:
        return f"arch={self.arch}, units={len(self.unit_names())}"
