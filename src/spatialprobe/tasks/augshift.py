"""``task=augshift`` (P section 4.1, Eq. 1): "two different crops of the same image" pass the same encoder;
loss = CE(view 1) + CE(view 2) + ``augshift.lambda`` * MSE(pooled latent 1, pooled latent 2).

The two views come from the data loader (``task.views: 2``): each is its own draw of exactly the training
augmentation the baseline gets, cut from the same un-augmented image (CIFAR: a pad-4 crop and a flip each;
ImageNet: each its own draw of the ImageNet pipeline; the grid task: the same cell, each its own flip).
Validation and test are plain classification.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from spatialprobe.tasks.base import Task
from spatialprobe.tasks.classify import Classifier


def augshift_loss(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, lam: float):
    """``(loss, ce1, ce2, mse, logits1)`` with loss = CE(x1) + CE(x2) + lam * MSE(pooled latents)."""
    z = model.pool(model.forward_features(torch.cat([x1, x2])))  # one pass through the shared encoder
    logits = model.forward_head(z)
    (z1, z2), (l1, l2) = z.chunk(2), logits.chunk(2)
    ce1, ce2 = F.cross_entropy(l1, y), F.cross_entropy(l2, y)
    mse = F.mse_loss(z1, z2)
    return ce1 + ce2 + lam * mse, ce1, ce2, mse, l1


class AugShift(Classifier):
    """Trains with the AugShift loss (module docstring) on ``((view 1, view 2), labels)`` batches;
    evaluates like :class:`Classifier`."""

    def __init__(self, model: nn.Module, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch=None, lam: float = 1.0):
        super().__init__(model, num_classes, recipe, config, steps_per_epoch)
        self.lam = float(lam)

    def step(self, batch, stage: str) -> torch.Tensor:
        if stage != "train":
            return super().step(batch, stage)
        (x1, x2), y = batch[0], batch[1]
        loss, ce1, ce2, mse, logits = augshift_loss(self.model, x1, x2, y, self.lam)
        self.metrics("train").update(logits, y)
        n = len(y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.log_dict({"train_ce1": ce1, "train_ce2": ce2, "train_mse": mse}, on_step=False, on_epoch=True,
                      batch_size=n)
        return loss


class AugShiftTask(Task):
    name = "augshift"

    def module(self, cfg: DictConfig, network: nn.Module, config: dict, steps_per_epoch=None,
               datamodule=None) -> AugShift:
        return AugShift(network, int(cfg.dataset.num_classes), self.recipe(cfg), config=config,
                        steps_per_epoch=steps_per_epoch, lam=float(cfg.augshift["lambda"]))


TASK = AugShiftTask()
