"""ImageNet (ILSVRC-2012) and other full-size class-folder sets, decoded per epoch by worker processes.

Layout: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>`` (the validation
images sorted into class folders). Training: RandomResizedCrop(``image_size``) + horizontal
flip; validation and test: resize the short side to ``resize_size``, centre-crop ``image_size``.
Workers deliver uint8 tensors (4x less to copy than floats, through pinned memory); conversion
to float and normalisation happen on the training device, for the whole batch at once.

``context`` > 0 (shift consistency, :mod:`spatialprobe.tasks`): the test images are centre-cropped
``image_size + 2 * context`` px instead, and each test batch is ``(x, y, context_images)``: ``x``
the usual centre ``image_size`` crop of them, ``context_images`` the larger crop, from which the
shifted views are cut (Zhang 2019's protocol: 224 px windows of a 256 px centre crop).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from spatialprobe.data.datamodule import shards, train_batches
from spatialprobe.data.torchpath import Views, make_loader
from spatialprobe.errors import ConfigError, DataError

EVAL_DIRS = ("val", "test")
HINT = ("ImageNet must be laid out as <root>/train/<wnid>/<image>.JPEG and <root>/val/<wnid>/<image>.JPEG (move the "
        "validation images into class folders, e.g. with the valprep.sh script used by pytorch/examples)")


def transforms(train: bool, ds: DictConfig, context: int = 0) -> v2.Compose:
    """uint8 CHW tensors: RandomResizedCrop + flip for training, resize + centre crop (grown by ``context`` px
    per side) otherwise."""
    size = int(ds.image_size)
    if train and ds.augment:
        steps = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(int(ds.resize_size), antialias=True), v2.CenterCrop(size + 2 * context)]
    return v2.Compose([v2.ToImage(), *steps, v2.ToDtype(torch.uint8)])


def _describe(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:8] if folder.is_dir() else []
    return ", ".join(names) if names else "nothing"


class _PinnedClasses(datasets.ImageFolder):
    """An ImageFolder that numbers its classes like the training set (class folders may be missing)."""

    def __init__(self, root: str, classes: list[str]):
        self.pinned = classes
        super().__init__(root, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self.pinned, {c: i for i, c in enumerate(self.pinned)}


def _class_folder(folder: Path, classes: list[str] | None = None) -> datasets.ImageFolder:
    """torchvision's ImageFolder; ``classes`` pins the label numbering to the training set's."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory; {HINT}; found in {folder.parent}: {_describe(folder.parent)}")
    subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not subdirs:
        raise DataError(f"{folder}: no class sub-folders; {HINT}; found: {_describe(folder)}")
    if classes is not None:
        unknown = sorted(set(subdirs) - set(classes))
        if unknown:
            raise DataError(f"{folder}: classes missing from the training set: {', '.join(unknown[:5])}")
    try:
        data = datasets.ImageFolder(str(folder)) if classes is None else _PinnedClasses(str(folder), classes)
    except FileNotFoundError as err:  # class folders without a single image file
        raise DataError(f"{folder}: {err}") from None
    if len(data) == 0:
        raise DataError(f"{folder}: no image files in its class folders; {HINT}")
    return data


def _subset(data: Dataset, n: int | None, start: int = 0) -> Dataset:
    """A fixed pseudo-random ``n`` images (the same for every run), or everything."""
    if n is None:
        return data
    order = np.random.default_rng(0).permutation(len(data))
    return Subset(data, order[start : start + n].tolist())


class FileSetsDataModule(pl.LightningDataModule):
    """Loaders over ``self.sets`` (``train`` / ``val`` / ``test`` datasets of uint8 images, decoded by
    ``ds.num_workers`` processes); the first element of every batch is normalised on the device.
    Subclasses fill ``self.sets``; ``collate_fn`` batches their samples (None: torch's default)."""

    collate_fn = None
    train_views = 1  # 2 (task.views, task=augshift): two views of every training image, each its own draw

    def __init__(self, ds: DictConfig, batch_size: int, seed: int, channels_last: bool = False):
        super().__init__()
        self.ds, self.batch_size, self.seed, self.channels_last = ds, batch_size, seed, channels_last
        self.sets: dict[str, Dataset] = {}
        self.mean = torch.tensor(list(ds.mean)).view(1, 3, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(list(ds.std)).view(1, 3, 1, 1) * 255.0)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.sets.items()}

    def train_batches(self, world_size: int = 1) -> int:
        """Optimizer steps per epoch and rank (DDP pads every rank's share to ceil(n / world_size))."""
        return train_batches(len(self.sets["train"]), self.batch_size, world_size, padded=True)

    def _loader(self, split: str) -> DataLoader:
        trainer = self.trainer
        return make_loader(self.sets[split], self.batch_size, train=split == "train", seed=self.seed,
                           epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
                           num_workers=int(self.ds.num_workers), pin_memory=bool(self.ds.get("pin_memory", True)),
                           collate_fn=type(self).collate_fn, **shards(trainer))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 NCHW on the device -> normalised float, for the whole batch at once (each view of a pair)."""
        x, *rest = batch
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format

        def normalised(v: torch.Tensor) -> torch.Tensor:
            return v.float().sub_(self.mean.to(v.device)).mul_(self.inv_std.to(v.device)).contiguous(memory_format=fmt)

        x = tuple(normalised(v) for v in x) if isinstance(x, list | tuple) else normalised(x)
        return (x, *rest)


class ImageFolderDataModule(FileSetsDataModule):
    """Train / val / test loaders over ``<root>/train`` and ``<root>/val`` (val doubles as test).

    ``val_size > 0`` holds out that many (fixed, pseudo-random) training images for validation.
    """

    def __init__(self, ds: DictConfig, batch_size: int, seed: int, channels_last: bool = False, context: int = 0):
        super().__init__(ds, batch_size, seed, channels_last)
        self.context = int(context)
        root = Path(str(ds.root)).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: no such directory; {HINT}")
        train = _class_folder(root / "train")
        eval_dir = next((root / d for d in EVAL_DIRS if (root / d).is_dir()), root / "val")
        evaluation = _class_folder(eval_dir, train.classes)
        if len(train.classes) != ds.num_classes:
            raise DataError(f"{root / 'train'}: found {len(train.classes)} classes but dataset.num_classes="
                            f"{ds.num_classes} for {ds.name}")
        self.classes = train.classes
        train_eval = copy.copy(train)  # the same file list, evaluation transforms (held-out images)
        train.transform, train_eval.transform = transforms(True, ds), transforms(False, ds)
        self._train_folder = train
        evaluation.transform = transforms(False, ds)
        val_size = int(ds.get("val_size") or 0)
        if val_size >= len(train):
            raise ConfigError("dataset.val_size", val_size, f"must be smaller than the {len(train)} training images")
        eval_n = ds.get("eval_subset") or ds.get("subset")
        if val_size > 0:  # the held-out images come last in the fixed order, the training ones first
            order = np.random.default_rng(0).permutation(len(train))
            fit, held = order[: len(train) - val_size], order[len(train) - val_size :]
            self.sets = {"train": Subset(train, fit[: ds.get("subset") or None].tolist()),
                         "val": Subset(train_eval, held[:eval_n].tolist())}
        else:
            self.sets = {"train": _subset(train, ds.get("subset")), "val": _subset(evaluation, eval_n)}
        test = copy.copy(evaluation)  # its own transform: the test crop may carry context for Cons.S
        test.transform = transforms(False, ds, self.context)
        self.sets["test"] = _subset(test, eval_n)

    def train_dataloader(self) -> DataLoader:
        # task=augshift: every image twice through the ImageNet pipeline, each view its own draw
        self._train_folder.transform = Views(transforms(True, self.ds), self.train_views)
        return super().train_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Normalised on the device; a test batch cut with context for Cons.S is ``(centre, y, whole)``."""
        x, y = super().on_after_batch_transfer(batch, dataloader_idx)
        c = self.context
        if c and self.trainer is not None and self.trainer.testing:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            return x[..., c:x.shape[-2] - c, c:x.shape[-1] - c].contiguous(memory_format=fmt), y, x
        return x, y
