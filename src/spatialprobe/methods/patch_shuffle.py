"""patch_shuffle: permute positions only inside p x p tiles, independently per tile and channel.

Tiles at the right / bottom border are smaller when p does not divide the map; p >= the map size
is exactly spatial_shuffle (same random draws, same result).
"""

from __future__ import annotations

import torch

from spatialprobe.methods.base import StochasticOp, switches
from spatialprobe.methods.spatial_shuffle import permute_positions

#: This method's kind, read without importing this module by spatialprobe.config.facts.
KIND = "op"


class PatchShuffle(StochasticOp):
    def __init__(self, patch_size: int, train: bool = True, test: bool = True):
        super().__init__(train, test)
        self.patch_size = int(patch_size)

    def apply_op(self, x: torch.Tensor) -> torch.Tensor:
        return permute_positions(x, self.patch_size)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, {super().extra_repr()}"


def make_op(cfg) -> PatchShuffle:
    """A fresh op for one shuffle site, from the method's config (``method.train`` / ``method.test``)."""
    return PatchShuffle(int(cfg.patch_size), **switches(cfg))
