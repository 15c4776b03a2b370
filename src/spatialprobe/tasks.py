"""What a training run optimises and measures besides top-1 (SPEC part B).

* ``task=classify`` (default): :class:`~spatialprobe.module.Classifier`, cross-entropy.
* ``task=augshift``: :class:`AugShift` (P section 4.1, Eq. 1). Two random shifted crops of every
  training image (the image padded by ``augshift.shift`` black pixels per side, then a random
  window of the original size, independently per image and view) pass the same encoder;
  loss = CE(crop 1) + CE(crop 2) + ``augshift.lambda`` * MSE(pooled latent 1, pooled latent 2).
  Validation and test are plain classification.
* ``task=segment``: :class:`Segmenter`, semantic segmentation (P section 4.2's DeepLabv3-ResNet-50 on
  Cityscapes, trained with the recipe of torchvision's segmentation reference): pixel-wise
  cross-entropy ignoring unlabelled pixels, + ``segment.aux_weight`` x the auxiliary head's loss,
  whose parameters learn at ``segment.aux_lr_factor`` x the learning rate; logs ``{stage}_miou``
  (monitored for the best checkpoint) and ``{stage}_top1`` (pixel accuracy).
* ``task=detect``: :class:`~spatialprobe.detection.DetectionModule`, S0's YOLO-like detector on
  the (modified) network as backbone, on a ``dataset.kind=detect`` data set (VOC, cifar10_detect);
  its record holds ``map50``, ``map50_all_point``, ``ap50``, ``errors`` (S0 Fig. 9) and the boxes of
  the first test images (``examples``, S0 Fig. 8).
* ``eval.consistency=[S, ...]``: shift consistency Cons.S (P section 4.1, after Zhang 2019), logged
  as ``test_cons{S}`` for any classification run (:class:`ShiftConsistency`): for every test image
  and each of ``eval.consistency_passes`` passes, each of two views is the image shifted by its own
  random offset, drawn per image and per view, and Cons.S is the percentage of (image, pass) pairs
  whose two views get the same predicted class. A view is the H x W window at offset (dy, dx),
  dy and dx uniform in {0, ..., S}, of the image extended by S/2 px on every side: a shift of
  -S/2..+S/2 px per axis, so the two views differ by up to S px. The extension is real image
  content where the data set has it (ImageNet: the test images are centre-cropped S px larger,
  like Zhang's 256 px crops around the 224 px window) and black pixels otherwise (CIFAR: the
  padding of the training crop). Counts are summed over batches (and over DDP ranks) by
  :class:`ConsistencyMetric`, so the value is exact.

The task keys are checked by :func:`spatialprobe.schema.check_task` (``TASKS``). ``train.py`` asks this
module for the network (:func:`build_network`), the LightningModule, the metric that picks the best
checkpoint, the extra callbacks and the record fields, so a new task is one class here (or in a
module of its own), one yaml in ``conf/task/`` and its name in ``schema.TASKS``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F
from torchmetrics import Metric

from .config import get
from .module import Classifier
from .schema import consistency_shifts  # eval.consistency as a list of S
from .streams import generator


def task_name(cfg: DictConfig) -> str:
    return get(cfg, "task.name") or "classify"


def black(mean, std) -> torch.Tensor:
    """The normalised value of a black pixel, per channel, shaped (1, C, 1, 1): what padding fills in."""
    return (-torch.tensor(list(mean), dtype=torch.float32) / torch.tensor(list(std), dtype=torch.float32)).view(1, -1, 1, 1)


def windows(canvas: torch.Tensor, size: tuple[int, int], offsets: torch.Tensor) -> torch.Tensor:
    """``canvas[i, :, dy:dy+h, dx:dx+w]`` for every image i and its ``offsets[i] = (dy, dx)``, in one gather."""
    h, w = size
    unfolded = canvas.unfold(2, h, 1).unfold(3, w, 1)  # (N, C, H'-h+1, W'-w+1, h, w), a view
    offsets = offsets.to(canvas.device)
    out = unfolded[torch.arange(len(canvas), device=canvas.device), :, offsets[:, 0], offsets[:, 1]]
    nhwc = canvas.is_contiguous(memory_format=torch.channels_last) and not canvas.is_contiguous()
    return out.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def extend(x: torch.Tensor, before: int, after: int, fill: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with ``before`` / ``after`` px of ``fill`` (1, C, 1, 1) added on each side."""
    if before == after == 0:
        return x
    n, c, h, w = x.shape
    canvas = fill.to(device=x.device, dtype=x.dtype).expand(n, c, h + before + after, w + before + after).clone()
    canvas[..., before:before + h, before:before + w] = x
    return canvas


# --------------------------------------------------------------------------- AugShift
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

    def _step(self, batch, stage: str) -> torch.Tensor:
        if stage != "train":
            return super()._step(batch, stage)
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


# --------------------------------------------------------------------------- segmentation
class Segmenter(Classifier):
    """Trains a torchvision segmentation model (its forward returns ``{"out", "aux"}``); see module docstring."""

    def __init__(self, model: nn.Module, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch=None, aux_weight: float = 0.5, aux_lr_factor: float = 10.0):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

        from .segmentation import IGNORE

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

    def _step(self, batch, stage: str) -> torch.Tensor:
        from .segmentation import IGNORE

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
        from .module import build_optimizer, effective_lr

        aux = [p for n, p in self.model.named_parameters() if ".aux_classifier." in f".{n}"]
        ids = {id(p) for p in aux}
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in ids]}]
        if aux:
            groups.append({"params": aux, "lr": effective_lr(self.recipe, self.trainer.world_size) * self.aux_lr_factor})
        optimizer = build_optimizer(groups, self.recipe, self.trainer.world_size)
        return self._with_scheduler(optimizer)


# --------------------------------------------------------------------------- Cons.S
class ConsistencyMetric(Metric):
    """Cons.S in percent: agreeing (image, pass) pairs over all pairs; both counts are summed states."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("agree", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred1: torch.Tensor, pred2: torch.Tensor) -> None:
        self.agree += (pred1 == pred2).sum()
        self.total += pred1.numel()

    def compute(self) -> torch.Tensor:
        return 100.0 * self.agree.double() / self.total.clamp(min=1)


def shifted_views(x: torch.Tensor, shift: int, g: torch.Generator, fill: torch.Tensor,
                  margin: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of every image (module docstring): each shifted by its own offset in {0..shift}^2, per image.

    ``x`` holds the images with ``margin`` px of real context on every side (0: none); what the
    views need beyond it is ``fill``.
    """
    n, _, hh, ww = x.shape
    size = (hh - 2 * margin, ww - 2 * margin)
    lo, hi = shift // 2, shift - shift // 2  # px of extension before / after the image
    need = max(lo, hi) - margin
    canvas = extend(x, max(0, need), max(0, need), fill)
    start = max(0, need) + margin - lo  # where the (size + shift) px region around the image begins
    region = canvas[..., start:start + size[0] + shift, start:start + size[1] + shift]
    offsets = torch.randint(0, shift + 1, (2, n, 2), generator=g)
    return windows(region, size, offsets[0]), windows(region, size, offsets[1])


class ShiftConsistency(pl.Callback):
    """Logs ``test_cons{S}`` for every S of ``shifts``: ``passes`` random view pairs per test image.

    A test batch is ``(x, y)`` or ``(x, y, context)``, ``context`` holding the same images with
    ``margin`` px of surrounding image content (the ImageNet loader's larger centre crop).
    """

    def __init__(self, shifts, passes: int, seed: int, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), margin: int = 0):
        """``seed``: the run's evaluation seed (the views come from its ``consistency`` streams)."""
        self.shifts, self.passes, self.seed, self.margin = [int(s) for s in shifts], int(passes), int(seed), int(margin)
        self.fill = black(mean, std)
        self.metrics = {s: ConsistencyMetric() for s in self.shifts}

    def key(self, shift: int) -> str:
        return f"test_cons{shift}"

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        rank, ranks = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        for m in self.metrics.values():
            m.reset()
        # the same views for every model of a sweep (same eval seed); each S and each DDP rank its own stream
        self.generators = {s: generator(self.seed, "consistency", epoch=s, batch=rank, batches=ranks) for s in self.shifts}

    @torch.no_grad()
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, margin = (batch[2], self.margin) if len(batch) > 2 else (batch[0], 0)
        context = trainer.precision_plugin.test_step_context() if trainer is not None else torch.no_grad()
        with context:
            for shift, metric in self.metrics.items():
                metric.to(x.device)
                for _ in range(self.passes):
                    v1, v2 = shifted_views(x, shift, self.generators[shift], self.fill, margin)
                    metric.update(pl_module(v1).argmax(1), pl_module(v2).argmax(1))

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        for shift, metric in self.metrics.items():
            pl_module.log(self.key(shift), metric.compute(), sync_dist=True)  # compute() already sums every rank


# --------------------------------------------------------------------------- what train.py uses
def build_network(cfg: DictConfig, model: nn.Module) -> nn.Module:
    """The network the task trains, from the (modified) registry network: itself, or a detector on it."""
    if task_name(cfg) != "detect":
        return model
    from .detection import Detector

    return Detector(model, int(cfg.dataset.num_classes), int(cfg.dataset.image_size), int(cfg.detect.boxes),
                    int(cfg.detect.head_stride))


def build_module(cfg: DictConfig, model: nn.Module, config: dict, steps_per_epoch=None,
                 class_names: list[str] | None = None) -> Classifier:
    recipe = OmegaConf.to_container(cfg.recipe, resolve=True)
    num_classes = int(cfg.dataset.num_classes)
    if task_name(cfg) == "detect":
        from .detection import DetectionModule

        return DetectionModule(model, num_classes, recipe, config=config, steps_per_epoch=steps_per_epoch,
                               detect=OmegaConf.to_container(cfg.detect, resolve=True), class_names=class_names)
    if task_name(cfg) == "augshift":
        return AugShift(model, num_classes, recipe, config=config, steps_per_epoch=steps_per_epoch,
                        lam=float(cfg.augshift["lambda"]), shift=int(cfg.augshift.shift),
                        fill=black(cfg.dataset.mean, cfg.dataset.std))
    if task_name(cfg) == "segment":
        return Segmenter(model, num_classes, recipe, config=config, steps_per_epoch=steps_per_epoch,
                         aux_weight=float(cfg.segment.aux_weight), aux_lr_factor=float(cfg.segment.aux_lr_factor))
    return Classifier(model, num_classes, recipe, config=config, steps_per_epoch=steps_per_epoch)


def context_margin(cfg: DictConfig) -> int:
    """Px of real image context the test loader adds around each image for Cons.S (class-folder sets only)."""
    shifts = consistency_shifts(cfg)
    return -(-max(shifts) // 2) if shifts and get(cfg, "dataset.kind") == "imagefolder" else 0


def callbacks(cfg: DictConfig, eval_seed: int) -> list[pl.Callback]:
    shifts = consistency_shifts(cfg)
    if not shifts:
        return []
    return [ShiftConsistency(shifts, int(cfg.eval.consistency_passes), int(eval_seed), cfg.dataset.mean,
                             cfg.dataset.std, margin=context_margin(cfg))]


def monitor(cfg: DictConfig) -> str:
    """The validation metric (higher is better) that picks the best checkpoint."""
    return {"segment": "val_miou", "detect": "val_map50"}.get(task_name(cfg), "val_top1")


def _round(value) -> float | None:
    return None if value is None else round(float(value), 4)


def detect_fields(module) -> dict:
    """task=detect: mAP and error shares of the final network (``map50`` ...) and of the best-validation
    checkpoint (``map50_best`` ...), AP per class, the boxes of the first test images."""
    results = module.test_results
    final, best = results[0], results[-1]
    return {
        "map50": _round(final["map50"]), "map50_all_point": _round(final["map50_all_point"]),
        "map50_best": _round(best["map50"]), "map50_all_point_best": _round(best["map50_all_point"]),
        "ap50": {k: _round(v) for k, v in final["ap50"].items()},
        "errors": {k: _round(v) for k, v in final["errors"].items()},
        "errors_best": {k: _round(v) for k, v in best["errors"].items()},
        "errors_analysed": int(final["errors_analysed"]),
        "test_images": int(final["images"]),
        "examples": final["examples"],
    }


def record_fields(cfg: DictConfig, final: dict, best: dict, module=None) -> dict:
    """The record fields of this module's task and metrics (``task``, ``test_cons{S}`` / ``test_miou`` final
    and best, detection's mAP and errors)."""
    fields: dict = {"task": task_name(cfg)}
    if task_name(cfg) == "detect":
        fields.update(detect_fields(module))
    if task_name(cfg) == "segment":
        for suffix, metrics in (("", final), ("_best", best)):
            fields["test_miou" + suffix] = _round(metrics.get("test_miou"))
    for shift in consistency_shifts(cfg):
        key = f"test_cons{int(shift)}"
        for suffix, metrics in (("", final), ("_best", best)):
            fields[key + suffix] = _round(metrics.get(key))
    return fields
