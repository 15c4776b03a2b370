"""Model size and cost: exact parameter count and FLOPs per image (torch's flop counter)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """FLOPs of one forward pass of one image (a multiply-add counts as 2), in eval mode."""
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
