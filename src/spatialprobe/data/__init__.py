"""Data sets: sources that read files into uint8 arrays, and the datamodule that batches them.

The dataset keys are checked by :func:`spatialprobe.config.schema.check_dataset` (no file is opened there);
missing or malformed data is found here, where it is read.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from spatialprobe.data import detection, grid, imagefolder, smallimagenet
from spatialprobe.data.datamodule import ArrayDataModule
from spatialprobe.data.sources import (
    Splits,
    has_cifar_batches,
    has_class_folders,
    is_archive,
    load_cifar,
    load_folder,
)
from spatialprobe.errors import ConfigError, DataError


def native_size(ds: DictConfig) -> int:
    """The size of the stored images; ``image_size`` (the model's input) may differ: upsampled CIFAR."""
    return int(ds.get("native_size") or ds.image_size)


def _channels_last(cfg: DictConfig) -> bool:
    """Batches in NHWC memory when the model asks for it (model.channels_last)."""
    return bool(OmegaConf.select(cfg, "model.channels_last", default=False))


def build_array_datamodule(cfg: DictConfig) -> ArrayDataModule:
    splits = load_splits(cfg.dataset, cfg.paths.cache_dir)
    val_size = int(cfg.dataset.val_size or 0)
    if val_size >= len(splits.y["train"]):
        raise ConfigError("dataset.val_size", val_size, f"must be smaller than the {len(splits.y['train'])} "
                          "training images")
    return ArrayDataModule(splits, cfg.dataset, int(cfg.recipe.batch_size), int(cfg.seed),
                           channels_last=_channels_last(cfg))


def build_imagefolder_datamodule(cfg: DictConfig) -> imagefolder.ImageFolderDataModule:
    from spatialprobe.config.schema import (
        context_margin,  # shift consistency cuts its views from a larger test crop
    )

    return imagefolder.ImageFolderDataModule(cfg.dataset, int(cfg.recipe.batch_size), int(cfg.seed),
                                             channels_last=_channels_last(cfg), context=context_margin(cfg))


def build_grid_datamodule(cfg: DictConfig) -> grid.GridDataModule:
    splits = load_splits(grid.source_config(cfg.dataset), cfg.paths.cache_dir)
    return grid.GridDataModule(splits, cfg.dataset, int(cfg.recipe.batch_size), int(cfg.seed),
                               channels_last=_channels_last(cfg))


def build_cityscapes_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    from spatialprobe.data.cityscapes import CityscapesDataModule

    return CityscapesDataModule(cfg.dataset, int(cfg.recipe.batch_size), int(cfg.seed), channels_last=_channels_last(cfg))


#: dataset.kind (spatialprobe.config.schema.DATASET_KINDS) -> its datamodule builder
KINDS = {
    "array": build_array_datamodule,
    "imagefolder": build_imagefolder_datamodule,
    "grid": build_grid_datamodule,  # part B: images pasted into an n x n grid
    "cityscapes": build_cityscapes_datamodule,  # part B: semantic segmentation (task=segment)
    "detect": detection.build_datamodule,  # boxes: Pascal VOC, cifar10_detect
}


def load_splits(ds: DictConfig, cache_dir: str | Path | None) -> Splits:
    """Read the data set named by ``ds`` into uint8 arrays (decoding at most once)."""
    root = Path(str(ds.root)).expanduser()
    fmt, name = ds.format, ds.get("source") or ds.name  # source: whose files an upsampled variant reads
    if fmt == "auto":
        if smallimagenet.has_batches(root):
            fmt = "smallimagenet"
        elif is_archive(root) or (root.is_dir() and has_class_folders(root) and not has_cifar_batches(name, root)):
            fmt = "folder"
        else:
            fmt = "cifar"
    if fmt == "cifar":
        if name not in ("cifar10", "cifar100"):
            raise ConfigError("dataset.format", "cifar", f"torchvision batches exist only for CIFAR, not {name}",
                              ["folder"])
        if root.exists() and not root.is_dir():
            raise DataError(f"{root}: dataset.root must be a directory or a .tar.gz/.tar archive")
        splits = load_cifar(name, root, bool(ds.download), bool(ds.get("verify", True)))
    elif fmt == "smallimagenet":
        splits = smallimagenet.load_small_imagenet(root, native_size(ds), cache_dir)
    else:
        splits = load_folder(root, native_size(ds), cache_dir)
    if splits.num_classes != ds.num_classes:
        raise DataError(
            f"{splits.origin}: found {splits.num_classes} classes but dataset.num_classes={ds.num_classes} "
            f"for {ds.name}"
        )
    size, key = splits.x["train"].shape[1], "native_size" if ds.get("native_size") else "image_size"
    if size != native_size(ds):
        raise DataError(f"{splits.origin}: images are {size} px but dataset.{key}={native_size(ds)}")
    return splits


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The datamodule of ``dataset.kind`` (reads, or decodes once and caches, the data); ``task.views``
    views of every training image (2 for task=augshift: each view its own draw of the augmentation)."""
    dm = KINDS[cfg.dataset.get("kind", "array")](cfg)
    dm.train_views = int(OmegaConf.select(cfg, "task.views", default=1) or 1)
    return dm


__all__ = ["KINDS", "ArrayDataModule", "Splits", "build_datamodule", "load_splits"]
