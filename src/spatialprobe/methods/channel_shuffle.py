"""channel_shuffle: permute the channel order (one permutation for all positions and samples)."""

from __future__ import annotations

import torch

from .base import StochasticOp


class ChannelShuffle(StochasticOp):
    def apply_op(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, torch.randperm(x.shape[1], device=x.device)]
