"""``task=classify`` (the default): image classification with cross-entropy, top-1 / top-5 and losses."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from spatialprobe.tasks.base import STAGES, Task, TaskModule


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """Top-1 and (with more than 5 classes) top-5 accuracy, as fractions; keys ``top1``, ``top5``.

    Micro-averaged: the states are summed counts, so under DDP ``compute()`` gives exactly the
    accuracy over every rank's images.
    """
    ks = (1, 5) if num_classes > 5 else (1,)
    return MetricCollection({f"top{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in ks})


class Classifier(TaskModule):
    """Trains ``model`` with cross-entropy; logs ``{stage}_loss``, ``{stage}_top1``, ``{stage}_top5`` in percent."""

    def __init__(self, model: nn.Module, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch=None):
        super().__init__(model, recipe, config, steps_per_epoch)
        self.num_classes = num_classes
        # per stage; their keys "<stage>_top<k>" are the names the values are logged under
        self.train_metrics, self.val_metrics, self.test_metrics = (
            accuracy_metrics(num_classes).clone(prefix=f"{s}_") for s in STAGES)
        # evaluation losses averaged over images (not over ranks' means: DDP shards may differ by one image)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def metrics(self, stage: str) -> MetricCollection:
        return getattr(self, f"{stage}_metrics")

    def step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]  # a test batch may carry more (the context images of shift consistency)
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.metrics(stage).update(logits, y)
        if stage == "train":
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        else:
            getattr(self, f"{stage}_loss").update(loss, weight=len(y))
        return loss

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


class Classify(Task):
    name = "classify"

    def module(self, cfg: DictConfig, network: nn.Module, config: dict, steps_per_epoch=None,
               datamodule=None) -> Classifier:
        return Classifier(network, int(cfg.dataset.num_classes), self.recipe(cfg), config=config,
                          steps_per_epoch=steps_per_epoch)


TASK = Classify()
