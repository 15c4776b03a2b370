"""What the methods share: the on/off switch of stochastic ops at training and test time."""

from __future__ import annotations

import torch
from torch import nn


class StochasticOp(nn.Module):
    """A parameter-free random op that can be switched off separately in training and in evaluation."""

    def __init__(self, train: bool = True, test: bool = True):
        super().__init__()
        self.active_train, self.active_test = bool(train), bool(test)

    @property
    def active(self) -> bool:
        return self.active_train if self.training else self.active_test

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_op(x) if self.active else x

    def apply_op(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"train={self.active_train}, test={self.active_test}"


def switches(cfg) -> dict:
    """``method.train`` / ``method.test`` (default on) as the keyword arguments of a :class:`StochasticOp`."""
    return {"train": bool(cfg.get("train", True)), "test": bool(cfg.get("test", True))}
