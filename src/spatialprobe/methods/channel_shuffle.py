"""channel_shuffle: permute the channel order (one permutation for all positions and samples)."""

from __future__ import annotations

import torch

from spatialprobe.methods.base import StochasticOp, switches

#: This method's kind, read without importing this module by spatialprobe.config.facts.
KIND = "op"


class ChannelShuffle(StochasticOp):
    def apply_op(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, torch.randperm(x.shape[1], device=x.device)]


def make_op(cfg) -> ChannelShuffle:
    """A fresh op for one shuffle site, from the method's config (``method.train`` / ``method.test``)."""
    return ChannelShuffle(**switches(cfg))
