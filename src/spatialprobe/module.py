"""The LightningModule for image classification: cross-entropy, top-1/top-5, the recipe's optimiser."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from .errors import DivergenceError

STAGES = ("train", "val", "test")


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """Top-1 and (with more than 5 classes) top-5 accuracy, as fractions; keys ``top1``, ``top5``.

    Micro-averaged: the states are summed counts, so under DDP ``compute()`` gives exactly the
    accuracy over every rank's images.
    """
    ks = (1, 5) if num_classes > 5 else (1,)
    return MetricCollection({f"top{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in ks})


def effective_lr(recipe: dict, world_size: int = 1) -> float:
    """``recipe.lr``, scaled linearly with the global batch when ``recipe.lr_scale_batch`` is set.

    lr_used = lr * batch_size * world_size / lr_scale_batch (Goyal et al. 2017): the ImageNet recipe's
    0.1 per 256 images. ``batch_size`` is per device, so the global batch counts every device.
    """
    per = recipe.get("lr_scale_batch")
    return float(recipe["lr"]) * (int(recipe["batch_size"]) * world_size / per if per else 1.0)


def build_optimizer(params, recipe: dict, world_size: int = 1) -> torch.optim.Optimizer:
    lr = effective_lr(recipe, world_size)
    if recipe["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(recipe.get("betas", (0.9, 0.999))),
                                weight_decay=recipe["weight_decay"])
    if recipe["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(recipe["alpha"]), eps=float(recipe["eps"]),
                                   momentum=float(recipe["momentum"]), weight_decay=recipe["weight_decay"])
    return torch.optim.SGD(params, lr=lr, momentum=recipe["momentum"],
                           nesterov=bool(recipe.get("nesterov", False)), weight_decay=recipe["weight_decay"])


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: dict, epochs: int, total_steps: int) -> dict | None:
    """The recipe's learning-rate schedule, stepped every optimiser step; every schedule scales with the run.

    ``multistep``: x ``gamma`` at the ``milestones`` (fractions of the run, or epochs when >= 1);
    ``exponential``: x ``gamma`` after every epoch; ``poly``: lr * (1 - step / steps) ** ``poly_power``;
    ``cosine``: to 0 over the run; ``onecycle``: torch's one-cycle; ``constant``. ``warmup_epochs``
    (all but onecycle): a linear ramp over the first n steps (lr * i / n at step i = 1..n); milestones still
    count from the start of the run, the decays (exponential, poly, cosine) start after the ramp.
    """
    from torch.optim import lr_scheduler as sched

    kind = recipe.get("schedule", "constant")
    total_steps = max(1, total_steps)
    per_epoch = max(1, total_steps // max(1, epochs))
    if kind == "onecycle":
        return {"scheduler": sched.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                                              total_steps=total_steps), "interval": "step"}
    warm = min(total_steps - 1, round(float(recipe.get("warmup_epochs") or 0) * per_epoch))
    rest = total_steps - warm  # steps of the main schedule, which starts when the warm-up ends
    if kind == "multistep":
        epochs_at = sorted({max(1, round(f * epochs)) if f < 1 else int(f) for f in recipe["milestones"]})
        main = sched.MultiStepLR(optimizer, milestones=[max(1, e * per_epoch - warm) for e in epochs_at],
                                 gamma=recipe["gamma"])
    elif kind == "exponential":
        main = sched.StepLR(optimizer, step_size=per_epoch, gamma=recipe["gamma"])
    elif kind == "poly":
        main = sched.PolynomialLR(optimizer, total_iters=rest, power=float(recipe["poly_power"]))
    elif kind == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=rest)
    elif warm:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        return None
    if warm:
        ramp = sched.LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=max(1, warm - 1))
        main = sched.SequentialLR(optimizer, [ramp, main], milestones=[warm])
    return {"scheduler": main, "interval": "step"}


class Classifier(pl.LightningModule):
    """Trains ``model`` with cross-entropy; logs ``{stage}_loss``, ``{stage}_top1``, ``{stage}_top5`` in percent."""

    def __init__(self, model: nn.Module, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch: int | Callable[[int], int] | None = None):
        super().__init__()
        self.model = model
        # Known up front from the data sizes. Lightning's estimated_stepping_batches would build the
        # train loader before a checkpoint is restored, and the loader's mid-epoch state would be lost.
        # A callable gets the number of processes (DDP: every rank trains on its share of the data).
        self.steps_per_epoch = steps_per_epoch
        self.recipe = dict(recipe)
        self.config = config or {}
        self.num_classes = num_classes
        # per stage; their keys "<stage>_top<k>" are the names the values are logged under
        self.train_metrics, self.val_metrics, self.test_metrics = (
            accuracy_metrics(num_classes).clone(prefix=f"{s}_") for s in STAGES)
        # evaluation losses averaged over images (not over ranks' means: DDP shards may differ by one image)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def metrics(self, stage: str) -> MetricCollection:
        return getattr(self, f"{stage}_metrics")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]  # a test batch may carry more (the context images of shift consistency)
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.metrics(stage).update(logits, y)
        if stage == "train":
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        else:
            getattr(self, f"{stage}_loss").update(loss, weight=len(y))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                f"lower recipe.lr (now {self.recipe['lr']}) or set trainer.gradient_clip_val"
            )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch_metrics(self, stage: str) -> None:
        """Log the stage's ``{stage}_top1`` / ``_top5`` (percent) and evaluation ``{stage}_loss``."""
        # compute() gathers every rank's states (exact under DDP); sync_dist only marks the values as global
        values = {name: value * 100.0 for name, value in self.metrics(stage).compute().items()}
        if stage != "train":
            values[f"{stage}_loss"] = getattr(self, f"{stage}_loss").compute()
            getattr(self, f"{stage}_loss").reset()
        self.log_dict(values, prog_bar=True, sync_dist=True)
        self.metrics(stage).reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def configure_optimizers(self) -> Any:
        return self._with_scheduler(build_optimizer(self.parameters(), self.recipe, self.trainer.world_size))

    def _with_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        if self.steps_per_epoch is not None:
            per_epoch = self.steps_per_epoch
            per_epoch = per_epoch(self.trainer.world_size) if callable(per_epoch) else per_epoch
            steps = self._limited(per_epoch) * epochs // max(1, self.trainer.accumulate_grad_batches)
        else:
            steps = self.trainer.estimated_stepping_batches
            steps = int(steps) if math.isfinite(steps) else 1
        scheduler = build_scheduler(optimizer, self.recipe, epochs, steps)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _limited(self, n: int) -> int:
        limit = self.trainer.limit_train_batches
        if isinstance(limit, int):
            return min(n, limit)
        return max(1, int(n * float(limit))) if limit is not None else n

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # everything needed to rebuild the network from the checkpoint alone (spatialprobe.evaluate)
        checkpoint["spatialprobe_config"] = self.config
