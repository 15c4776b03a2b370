"""The grid task of SPEC part B: each image pasted into one cell of an n x n grid of zeros.

A source image set (CIFAR-10 from any root the project reads) is turned into ``32n`` px inputs:
the normalised image fills one cell, every other pixel is 0 (the data set's mean colour after
normalisation). The target is the cell index in row-major order (``dataset.target=location``,
n*n classes) or the image's own class (``dataset.target=class``).

Placement: for training a fresh cell per sample, drawn from stream (seed, cells, epoch, rank),
so identical seeds give identical epochs; for validation / test a fixed cell per image index,
drawn once from ``dataset.placement_seed`` (the same for every run and every batch size). The
canvases are built on the device, one batch at a time, by index arithmetic (:func:`paste`).
The grid keys are checked by :func:`spatialprobe.config.schema.check_dataset` (``GRID_TARGETS``, ...).
Loaders can also yield where each object was placed (``with_cells``), which the position-channel
ranking and switch-off use to report per region (:func:`region_of`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from spatialprobe.data.datamodule import ArrayDataModule
from spatialprobe.data.loader import TensorBatches
from spatialprobe.data.sources import Splits
from spatialprobe.run.streams import generator

REGIONS = ("left", "centre", "right")


def source_config(ds: DictConfig) -> DictConfig:
    """The dataset config of the source images (what :func:`spatialprobe.data.load_splits` reads)."""
    src = OmegaConf.create(OmegaConf.to_container(ds, resolve=True))
    src.name, src.num_classes, src.image_size = ds.source, ds.source_classes, ds.cell_size
    return src


def paste(images: torch.Tensor, cells: torch.Tensor, n: int) -> torch.Tensor:
    """Put ``images`` (B, C, h, w) into cell ``cells[i]`` (row-major) of an n x n zero canvas (B, C, nh, nw)."""
    b, c, h, w = images.shape
    canvas = images.new_zeros(b, n, n, c, h, w)
    canvas[torch.arange(b, device=images.device), cells // n, cells % n] = images
    return canvas.permute(0, 3, 1, 4, 2, 5).reshape(b, c, n * h, n * w)


def region_of(cells: torch.Tensor, n: int) -> torch.Tensor:
    """0 / 1 / 2 = left / centre / right: the column of the cell relative to the grid's middle column."""
    twice_col = 2 * (cells % n)
    return (twice_col > n - 1).long() + (twice_col >= n - 1).long()


def fixed_cells(count: int, n: int, seed: int, stream: int = 0) -> torch.Tensor:
    """The evaluation placement: one cell per image index, a pure function of (count, n, seed, stream)."""
    return torch.randint(n * n, (count,), generator=generator(seed, "placement", batch=stream, batches=2))


class GridBatches:
    """Grid batches over a :class:`TensorBatches` (its order, flip, normalisation, sharding, resume state).

    ``cells``: the fixed placement of every image (evaluation), or None to draw a fresh cell per
    sample from (seed, epoch) (training). Yields ``(x, y)``, or ``(x, y, cells)`` with ``with_cells``.
    """

    def __init__(self, base: TensorBatches, n: int, target: str, cells: torch.Tensor | None = None,
                 with_cells: bool = False):
        base.pad = 0  # the paper flips the pasted image but does not crop it: placement is the task
        self.base, self.n, self.target, self.cells, self.with_cells = base, n, target, cells, with_cells

    def __len__(self) -> int:
        return len(self.base)

    # mid-epoch resume: the same protocol as the base loader
    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        base = self.base
        start, base._resume_at = base._resume_at, 0
        epoch = base.epoch_fn()
        idx = base._indices()
        drawn = None
        if self.cells is None:
            g = generator(base.seed, "cells", epoch, base.rank, base.world_size)
            drawn = torch.randint(self.n * self.n, (len(idx),), generator=g)
        idx = idx.to(base.images.device)
        for b in range(start, len(self)):
            window = slice(b * base.batch_size, (b + 1) * base.batch_size)
            sel = idx[window]
            cells = (self.cells[sel.cpu()] if drawn is None else drawn[window]).to(base.device)
            views = base.augmented(base._gather(sel), epoch, b)  # two views (augshift): the same cell, own flips
            x = tuple(paste(v, cells, self.n) for v in views) if base.views > 1 else paste(views, cells, self.n)
            y = cells if self.target == "location" else base.labels[sel.to(base.device)]
            yield (x, y, cells) if self.with_cells else (x, y)


class GridDataModule(ArrayDataModule):
    """:class:`ArrayDataModule` whose batches are grid canvases (see the module docstring)."""

    def __init__(self, splits: Splits, ds: DictConfig, batch_size: int, seed: int, eval_batch_size: int | None = None,
                 channels_last: bool = False):
        super().__init__(splits, ds, batch_size, seed, eval_batch_size, channels_last=channels_last)
        self.size = int(ds.cell_size)  # the base loader keeps the cell size; the canvas is 32n px
        self.n, self.target = int(ds.grid), str(ds.target)
        pseed = int(ds.placement_seed)
        # drawn for the whole split, then cut like the images: image i keeps its cell whatever the subset
        test = fixed_cells(len(splits.y["test"]), self.n, pseed)[: len(self.arrays["test"][1])]
        val = test[: len(self.arrays["val"][1])] if int(ds.get("val_size") or 0) == 0 else \
            fixed_cells(len(self.arrays["val"][1]), self.n, pseed, stream=1)
        self.cells = {"val": val, "test": test}

    def grid_loader(self, split: str, train: bool = False, with_cells: bool = False) -> GridBatches:
        if split not in self.tensors:
            self.setup()
        base = super().train_dataloader() if train else self._loader(split, False)
        return GridBatches(base, self.n, self.target, None if train else self.cells.get(split), with_cells)

    def train_dataloader(self) -> GridBatches:
        return self.grid_loader("train", True)

    def val_dataloader(self) -> GridBatches:
        return self.grid_loader("val")

    def test_dataloader(self) -> GridBatches:
        return self.grid_loader("test")
