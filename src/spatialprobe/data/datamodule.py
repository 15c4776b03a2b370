"""LightningDataModule over in-memory uint8 splits (CIFAR and other 32/64 px sets)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from .loader import TensorBatches
from .sources import Splits


def take(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (x, y) if n is None else (x[:n], y[:n])


class ArrayDataModule(pl.LightningDataModule):
    """Train / val / test batches from :class:`Splits`; augmentation runs batch-wise on the device.

    ``val_size > 0`` holds out the last ``val_size`` training images for validation; otherwise the
    test split doubles as the validation split (as in the papers, which report test accuracy).
    """

    def __init__(self, splits: Splits, ds: DictConfig, batch_size: int, seed: int, eval_batch_size: int | None = None):
        super().__init__()
        self.ds, self.batch_size, self.seed = ds, batch_size, seed
        self.eval_batch_size = eval_batch_size or batch_size
        eval_n = ds.get("eval_subset") or ds.get("subset")
        x_train, y_train = splits.x["train"], splits.y["train"]
        val_size = int(ds.get("val_size") or 0)
        if val_size > 0:
            x_val, y_val = x_train[-val_size:], y_train[-val_size:]
            x_train, y_train = x_train[:-val_size], y_train[:-val_size]
        else:
            x_val, y_val = splits.x["test"], splits.y["test"]
        self.arrays = {
            "train": take(x_train, y_train, ds.get("subset")),
            "val": take(x_val, y_val, eval_n),
            "test": take(splits.x["test"], splits.y["test"], eval_n),
        }
        self.classes = splits.classes
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def train_batches(self, world_size: int = 1) -> int:
        """Optimizer steps per epoch (the training loader drops its last partial batch)."""
        return len(self.arrays["train"][1]) // world_size // self.batch_size

    def sizes(self) -> dict[str, int]:
        return {k: len(v[1]) for k, v in self.arrays.items()}

    def setup(self, stage: str | None = None) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        for split, (x, y) in self.arrays.items():
            if split not in self.tensors or self.tensors[split][0].device != device:
                self.tensors[split] = (
                    torch.from_numpy(np.ascontiguousarray(x)).to(device),
                    torch.from_numpy(np.ascontiguousarray(y)).to(device),
                )

    def _loader(self, split: str, train: bool) -> TensorBatches:
        x, y = self.tensors[split]
        trainer = self.trainer
        return TensorBatches(
            x,
            y,
            self.batch_size if train else self.eval_batch_size,
            self.ds.mean,
            self.ds.std,
            shuffle=train,
            augment=train and bool(self.ds.augment),
            drop_last=train,
            seed=self.seed,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self) -> TensorBatches:
        loader = self._loader("train", True)
        if self.trainer is not None:
            loader.progress_fn = lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return loader

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", False)
