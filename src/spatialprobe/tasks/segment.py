"""``task=segment``: semantic segmentation (P section 4.2's DeepLabv3-ResNet-50 on Cityscapes, trained
with the recipe of torchvision's segmentation reference): pixel-wise cross-entropy ignoring unlabelled
pixels, + ``segment.aux_weight`` x the auxiliary head's loss, whose parameters learn at
``segment.aux_lr_factor`` x the learning rate; logs ``{stage}_miou`` (monitored for the best
checkpoint) and ``{stage}_top1`` (pixel accuracy).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from spatialprobe.data.cityscapes import IGNORE
from spatialprobe.tasks.base import Task, build_optimizer, effective_lr
from spatialprobe.tasks.classify import Classifier


class Segmenter(Classifier):
    """Trains a torchvision segmentation model (its forward returns ``{"out", "aux"}``); see module docstring."""

    def __init__(self, model: nn.Module, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch=None, aux_weight: float = 0.5, aux_lr_factor: float = 10.0):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

        super().__init__(model, num_classes, recipe, config, steps_per_epoch)
        self.aux_weight, self.aux_lr_factor = float(aux_weight), float(aux_lr_factor)
        # pixel accuracy and mIoU over labelled pixels, summed states (exact under DDP); none while training
        self.train_metrics = MetricCollection({}, prefix="train_")
        self.val_metrics, self.test_metrics = (MetricCollection(
            {"top1": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE),
             "miou": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=IGNORE)}, prefix=f"{s}_")
            for s in ("val", "test"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]

    def step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        out = self.model(x)
        loss = F.cross_entropy(out["out"], y, ignore_index=IGNORE)
        if stage == "train":
            if "aux" in out and self.aux_weight:
                loss = loss + self.aux_weight * F.cross_entropy(out["aux"], y, ignore_index=IGNORE)
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        else:
            self.metrics(stage).update(out["out"].argmax(1), y)
            getattr(self, f"{stage}_loss").update(loss, weight=len(y))
        return loss

    def configure_optimizers(self):
        aux = [p for n, p in self.model.named_parameters() if ".aux_classifier." in f".{n}"]
        ids = {id(p) for p in aux}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in ids]}]
        if aux:
            groups.append({"params": aux, "lr": effective_lr(self.recipe, self.trainer.world_size) * self.aux_lr_factor})
        optimizer = build_optimizer(groups, self.recipe, self.trainer.world_size)
        return self._with_scheduler(optimizer)


class Segment(Task):
    name = "segment"

    def module(self, cfg: DictConfig, network: nn.Module, config: dict, steps_per_epoch=None,
               datamodule=None) -> Segmenter:
        return Segmenter(network, int(cfg.dataset.num_classes), self.recipe(cfg), config=config,
                         steps_per_epoch=steps_per_epoch, aux_weight=float(cfg.segment.aux_weight),
                         aux_lr_factor=float(cfg.segment.aux_lr_factor))


TASK = Segment()
