"""Shift consistency Cons.S (P section 4.1, after Zhang 2019), for any classification task.

``eval.consistency=[S, ...]`` logs ``test_cons{S}`` (:class:`ShiftConsistency`): for every test image
and each of ``eval.consistency_passes`` passes, each of two views is the image shifted by its own
random offset, drawn per image and per view, and Cons.S is the percentage of (image, pass) pairs whose
two views get the same predicted class. A view is the H x W window at offset (dy, dx), dy and dx
uniform in {0, ..., S}, of the image extended by S/2 px on every side: a shift of -S/2..+S/2 px per
axis, so the two views differ by up to S px. The extension is real image content where the data set
has it (ImageNet: the test images are centre-cropped S px larger, like Zhang's 256 px crops around the
224 px window) and black pixels otherwise (CIFAR: the padding of the training crop). Counts are summed
over batches (and over DDP ranks) by :class:`ConsistencyMetric`, so the value is exact.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torchmetrics import Metric

from spatialprobe.config.schema import consistency_shifts, context_margin
from spatialprobe.run.streams import generator


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


def consistency_callbacks(cfg: DictConfig, eval_seed: int) -> list[pl.Callback]:
    """:class:`ShiftConsistency` when the config asks for Cons.S (``eval.consistency``), else nothing."""
    shifts = consistency_shifts(cfg)
    if not shifts:
        return []
    return [ShiftConsistency(shifts, int(cfg.eval.consistency_passes), int(eval_seed), cfg.dataset.mean,
                             cfg.dataset.std, margin=context_margin(cfg))]
