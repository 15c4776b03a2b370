"""What a training run optimises and measures besides top-1 (SPEC part B).

* ``task=classify`` (default): :class:`~spatialprobe.module.Classifier`, cross-entropy.
* ``task=augshift``: :class:`AugShift`. Two random shifted crops of every training image (zero
  padding ``augshift.shift``, a random window of the original size, independently per image and
  view) pass the same encoder; loss = CE(crop 1) + CE(crop 2) + ``augshift.lambda`` * MSE(pooled
  latent 1, pooled latent 2). Validation and test are plain classification.
* ``eval.consistency=S``: shift consistency Cons.S, logged as ``test_cons{S}`` for any
  classification run (:class:`ShiftConsistency`): for every test batch and each of
  ``eval.consistency_passes`` passes, two offsets (oy, ox) in 0..S-1 are drawn (one pair for the
  whole batch), both views are cut from the image zero-padded by S//2 on every side (so inputs
  keep their size: a relative shift of up to S-1 px per axis), and the percentage of images whose
  predicted classes agree is reported.

``train.py`` asks this module for the LightningModule, the extra callbacks and the record fields,
so a new task is one class here and one yaml in ``conf/task/``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from .config import get, require_choice, require_number, require_positive_int
from .data.loader import random_crop_flip
from .errors import ConfigError
from .module import Classifier
from .streams import stream_seed

TASKS = ("classify", "augshift")


def task_name(cfg: DictConfig) -> str:
    return get(cfg, "task.name") or "classify"


def validate(cfg: DictConfig) -> None:
    if get(cfg, "task") is not None:
        require_choice(cfg, "task.name", TASKS)
    size = get(cfg, "dataset.image_size")
    if task_name(cfg) == "augshift":
        require_number(cfg, "augshift.lambda", minimum=0)
        require_number(cfg, "augshift.shift", integer=True, minimum=0)
    shift = require_number(cfg, "eval.consistency", integer=True, minimum=2, optional=True)
    if shift is not None:
        require_positive_int(cfg, "eval.consistency_passes")
        if isinstance(size, int) and shift > size:
            raise ConfigError("eval.consistency", shift, f"larger than the {size} px images", [f"2..{size}"])


# --------------------------------------------------------------------------- AugShift
def shifted_crops(x: torch.Tensor, shift: int, g: torch.Generator) -> torch.Tensor:
    """A random window of the original size from ``x`` (N, C, H, W) zero-padded by ``shift``, per image."""
    if shift == 0:
        return x
    return random_crop_flip(x.permute(0, 2, 3, 1), shift, False, g).permute(0, 3, 1, 2)


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
                 steps_per_epoch=None, lam: float = 1.0, shift: int = 4):
        super().__init__(model, num_classes, recipe, config, steps_per_epoch)
        self.lam, self.shift = float(lam), int(shift)

    def _step(self, batch, stage: str) -> torch.Tensor:
        if stage != "train":
            return super()._step(batch, stage)
        x, y = batch[0], batch[1]
        g = torch.default_generator  # the step's own stream (callbacks.SeedSchedule)
        loss, ce1, ce2, mse, logits = augshift_loss(self.model, shifted_crops(x, self.shift, g),
                                                    shifted_crops(x, self.shift, g), y, self.lam)
        self.metrics("train").update(logits, y)
        n = len(y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.log_dict({"train_ce1": ce1, "train_ce2": ce2, "train_mse": mse}, on_step=False, on_epoch=True,
                      batch_size=n)
        return loss


# --------------------------------------------------------------------------- Cons.S
def shift_agreement(model: nn.Module, x: torch.Tensor, shift: int, g: torch.Generator) -> int:
    """How many images of ``x`` get the same predicted class under two random shifts (module docstring)."""
    h, w = x.shape[-2:]
    pad = shift // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, shift, (2, 2), generator=g).tolist()
    preds = [model(padded[..., oy:oy + h, ox:ox + w]).argmax(1) for oy, ox in offsets]
    return int((preds[0] == preds[1]).sum())


class ShiftConsistency(pl.Callback):
    """Logs ``test_cons{S}``: Cons.S over the test set, ``passes`` random shift pairs per batch."""

    def __init__(self, shift: int, passes: int, seed: int):
        self.shift, self.passes, self.seed = int(shift), int(passes), int(seed)
        self.agree = self.total = 0

    @property
    def key(self) -> str:
        return f"test_cons{self.shift}"

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.agree = self.total = 0
        self.g = torch.Generator().manual_seed(self.seed)  # the same shift pairs for every model

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x = batch[0]
        for _ in range(self.passes):
            self.agree += shift_agreement(pl_module, x, self.shift, self.g)
        self.total += self.passes * len(x)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log(self.key, 100.0 * self.agree / max(1, self.total), sync_dist=True)


# --------------------------------------------------------------------------- what train.py uses
def build_module(cfg: DictConfig, model: nn.Module, config: dict, steps_per_epoch=None) -> Classifier:
    recipe = OmegaConf.to_container(cfg.recipe, resolve=True)
    num_classes = int(cfg.dataset.num_classes)
    if task_name(cfg) == "augshift":
        return AugShift(model, num_classes, recipe, config=config, steps_per_epoch=steps_per_epoch,
                        lam=float(cfg.augshift["lambda"]), shift=int(cfg.augshift.shift))
    return Classifier(model, num_classes, recipe, config=config, steps_per_epoch=steps_per_epoch)


def callbacks(cfg: DictConfig, eval_seed: int) -> list[pl.Callback]:
    shift = get(cfg, "eval.consistency")
    if shift is None:
        return []
    return [ShiftConsistency(int(shift), int(cfg.eval.consistency_passes), stream_seed(int(eval_seed), "consistency"))]


def record_fields(cfg: DictConfig, final: dict, best: dict) -> dict:
    """The record fields of this module's task and metrics (``task``, ``test_cons{S}`` final and best)."""
    fields: dict = {"task": task_name(cfg)}
    shift = get(cfg, "eval.consistency")
    if shift is not None:
        key = f"test_cons{int(shift)}"
        for suffix, metrics in (("", final), ("_best", best)):
            value = metrics.get(key)
            fields[key + suffix] = None if value is None else round(float(value), 4)
    return fields
