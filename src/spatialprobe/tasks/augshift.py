"""``task=augshift`` (P section 4.1, Eq. 1): two random shifted crops of every training image (the image
padded by ``augshift.shift`` black pixels per side, then a random window of the original size,
independently per image and view) pass the same encoder; loss = CE(crop 1) + CE(crop 2) +
``augshift.lambda`` * MSE(pooled latent 1, pooled latent 2). Validation and test are plain classification.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from spatialprobe.tasks.base import Task
from spatialprobe.tasks.classify import Classifier
from spatialprobe.tasks.consistency import black, extend, windows


def shifted_crops(x: torch.Tensor, shift: int, g: torch.Generator, fill: torch.Tensor | None = None) -> torch.Tensor:
    """A random window of the original size of every image of ``x`` (N, C, H, W) padded by ``shift`` px of ``fill``
    (default 0) per side: torchvision's ``RandomCrop(size, padding=shift)``, per image."""
    if shift == 0:
        return x
    fill = torch.zeros(1, x.shape[1], 1, 1) if fill is None else fill
    offsets = torch.randint(0, 2 * shift + 1, (len(x), 2), generator=g)
    return windows(extend(x, shift, shift, fill), tuple(x.shape[-2:]), offsets)


def augshift_loss(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, lam: float):
    """``(loss, ce1, ce2, mse, logits1)`` with loss = CE(x1) + CE(x2) + lam * MSE(pooled latents)."""
    z = model.pool(model.forward_features(torch.cat([x1, x2])))  # one pass through the shared encoder
    logits = model.forward_head(z)
    (z1, z2), (l1, l2) = z.chunk(2), logits.chunk(2)
    ce1, ce2 = F.cross_entropy(l1, y), F.cross_entropy(l2, y)
    mse = F.mse_loss(z1, z2)
    return ce1 + ce2 + lam * mse, ce1, ce2, mse, l1


class AugShift(Classifier):
    """Trains with the AugShift loss (module docstring); evaluates like :class:`Classifier`."""

    def __init__(self, model: nn.Module, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch=None, lam: float = 1.0, shift: int = 4, fill: torch.Tensor | None = None):
        super().__init__(model, num_classes, recipe, config, steps_per_epoch)
        self.lam, self.shift = float(lam), int(shift)
        self.fill = fill  # the padding's value per channel (black in normalised units)

    def step(self, batch, stage: str) -> torch.Tensor:
        if stage != "train":
            return super().step(batch, stage)
        x, y = batch[0], batch[1]
        g = torch.default_generator  # the step's own stream (callbacks.SeedSchedule)
        loss, ce1, ce2, mse, logits = augshift_loss(self.model, shifted_crops(x, self.shift, g, self.fill),
                                                    shifted_crops(x, self.shift, g, self.fill), y, self.lam)
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
                        steps_per_epoch=steps_per_epoch, lam=float(cfg.augshift["lambda"]),
                        shift=int(cfg.augshift.shift), fill=black(cfg.dataset.mean, cfg.dataset.std))


TASK = AugShiftTask()
