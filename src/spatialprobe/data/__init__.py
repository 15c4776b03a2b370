"""Data sets: sources that read files into uint8 arrays, and the datamodule that batches them."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..config import require_choice, require_number, require_positive_int
from ..errors import ConfigError, DataError
from . import grid
from .datamodule import ArrayDataModule
from .sources import Splits, has_cifar_batches, has_class_folders, is_archive, load_cifar, load_folder

FORMATS = ("auto", "cifar", "folder")


def validate(cfg: DictConfig) -> None:
    """Checks on the dataset keys that need no file access."""
    if cfg.dataset.get("kind") == "grid":  # grid task (part B): num_classes / image_size derive from its keys
        grid.validate(cfg)
    require_choice(cfg, "dataset.format", FORMATS)
    require_positive_int(cfg, "dataset.num_classes")
    require_positive_int(cfg, "dataset.image_size")
    require_positive_int(cfg, "dataset.subset", optional=True)
    require_positive_int(cfg, "dataset.eval_subset", optional=True)
    require_number(cfg, "dataset.val_size", integer=True, minimum=0)
    for key in ("dataset.mean", "dataset.std"):
        value = cfg.dataset.get(key.split(".")[1])
        if value is None or len(value) != 3:
            raise ConfigError(key, value, "must list 3 values (R, G, B)")


def load_splits(ds: DictConfig, cache_dir: str | Path | None) -> Splits:
    """Read the data set named by ``ds`` into uint8 arrays (decoding at most once)."""
    root = Path(str(ds.root)).expanduser()
    fmt = ds.format
    if fmt == "auto":
        if is_archive(root) or (root.is_dir() and has_class_folders(root) and not has_cifar_batches(ds.name, root)):
            fmt = "folder"
        else:
            fmt = "cifar"
    if fmt == "cifar":
        if ds.name not in ("cifar10", "cifar100"):
            raise ConfigError("dataset.format", "cifar", f"torchvision batches exist only for CIFAR, not {ds.name}",
                              ["folder"])
        if root.exists() and not root.is_dir():
            raise DataError(f"{root}: dataset.root must be a directory or a .tar.gz/.tar archive")
        splits = load_cifar(ds.name, root, bool(ds.download), bool(ds.get("verify", True)))
    else:
        splits = load_folder(root, int(ds.image_size), cache_dir)
    if splits.num_classes != ds.num_classes:
        raise DataError(
            f"{splits.origin}: found {splits.num_classes} classes but dataset.num_classes={ds.num_classes} "
            f"for {ds.name}"
        )
    size = splits.x["train"].shape[1]
    if size != ds.image_size:
        raise DataError(f"{splits.origin}: images are {size} px but dataset.image_size={ds.image_size}")
    return splits


def build_datamodule(cfg: DictConfig) -> ArrayDataModule:
    is_grid = cfg.dataset.get("kind") == "grid"
    splits = load_splits(grid.source_config(cfg.dataset) if is_grid else cfg.dataset, cfg.paths.cache_dir)
    dm = (grid.GridDataModule if is_grid else ArrayDataModule)(splits, cfg.dataset, int(cfg.recipe.batch_size),
                                                               int(cfg.seed))
    val_size = int(cfg.dataset.val_size or 0)
    if val_size >= len(splits.y["train"]):
        raise ConfigError("dataset.val_size", val_size, f"must be smaller than the {len(splits.y['train'])} "
                          "training images")
    return dm


__all__ = ["ArrayDataModule", "Splits", "build_datamodule", "load_splits", "validate"]
