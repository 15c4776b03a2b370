"""LightningDataModule over in-memory uint8 splits (CIFAR and other 32/64 px sets)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from spatialprobe.data.loader import TensorBatches
from spatialprobe.data.sources import Splits
from spatialprobe.data.torchpath import ArrayImages, Views, array_transform, make_loader

log = logging.getLogger("spatialprobe")

# dataset.loader: device | torch; dataset.placement: auto | device | host (spatialprobe.config.schema LOADERS, PLACEMENTS)
DEVICE_MEMORY_FRACTION = 0.5  # placement=auto: a split goes to the GPU if it takes at most this much of its free memory


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``x``'s memory (a memory-mapped cache stays memory-mapped)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")  # read-only memmaps; nothing writes to them
        return torch.from_numpy(np.ascontiguousarray(x))


def place(x: np.ndarray, device: torch.device, placement: str) -> torch.Tensor:
    """Where a split's images live: on ``device`` as one tensor, or in host memory (gathered per batch).

    ``auto``: on a GPU when the split fits into half of its free memory, else in host memory; on
    the CPU the array is used where it is (a memory-mapped cache is not copied into RAM).
    ``device`` forces one tensor on the device (on the CPU: a RAM copy of a memory-mapped cache);
    ``host`` keeps the images in host memory.
    """
    if placement == "device" and device.type == "cpu" and isinstance(x, np.memmap):
        return torch.from_numpy(np.array(x))
    t = as_tensor(x)
    if placement == "host" or device.type == "cpu":
        return t
    if placement == "auto" and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if t.nbytes > DEVICE_MEMORY_FRACTION * free:
            log.info("%.1f GiB of images stay in host memory (%.1f GiB free on %s); batches are gathered there",
                     t.nbytes / 2**30, free / 2**30, device)
            return t
    return t.to(device)


def train_batches(n: int, batch_size: int, world_size: int, padded: bool) -> int:
    """Full batches per rank and epoch: the device loader gives every rank n // world_size images,
    Lightning's DistributedSampler (``padded``, for torch DataLoaders) ceil(n / world_size)."""
    per_rank = -(-n // world_size) if padded else n // world_size
    return per_rank // batch_size


def shards(trainer) -> dict[str, int]:
    """This process's ``rank`` and the ``world_size`` (one process without a trainer)."""
    return {"rank": trainer.global_rank, "world_size": trainer.world_size} if trainer is not None else {}


def take(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (x, y) if n is None else (x[:n], y[:n])


class ArrayDataModule(pl.LightningDataModule):
    """Train / val / test batches from :class:`Splits`; augmentation runs batch-wise on the device.

    ``val_size > 0`` holds out the last ``val_size`` training images for validation; otherwise the
    test split doubles as the validation split (as in the papers, which report test accuracy).
    ``train_views = 2`` (``task.views``, task=augshift): every training batch holds two views of its
    images, ``((view 1, view 2), labels)``, each its own draw of the training augmentation.
    """

    train_views = 1

    def __init__(self, splits: Splits, ds: DictConfig, batch_size: int, seed: int, eval_batch_size: int | None = None,
                 channels_last: bool = False):
        super().__init__()
        self.ds, self.batch_size, self.seed, self.channels_last = ds, batch_size, seed, channels_last
        self.loader = ds.get("loader", "device")
        self.size = int(ds.image_size)
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
        return train_batches(len(self.arrays["train"][1]), self.batch_size, world_size, padded=self.loader == "torch")

    def sizes(self) -> dict[str, int]:
        return {k: len(v[1]) for k, v in self.arrays.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.loader != "device":
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        placed: dict[tuple, torch.Tensor] = {}  # val and test are often the same images: place them once
        for split, (x, y) in self.arrays.items():
            if split not in self.tensors or self.tensors[split][1].device != device:
                key = (x.__array_interface__["data"][0], x.shape)
                if key not in placed:
                    placed[key] = place(x, device, self.ds.get("placement", "auto"))
                self.tensors[split] = (placed[key], torch.from_numpy(np.ascontiguousarray(y)).to(device))

    def _loader(self, split: str, train: bool) -> TensorBatches | DataLoader:
        trainer = self.trainer
        epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else None
        if self.loader == "torch":
            x, y = self.arrays[split]
            transform = array_transform(train and bool(self.ds.augment), self.ds.mean, self.ds.std,
                                        native_size=x.shape[1], size=self.size)
            transform = Views(transform, self.train_views if train else 1)
            return make_loader(ArrayImages(x, y, transform), self.batch_size if train else self.eval_batch_size,
                               train=train, seed=self.seed, epoch_fn=epoch_fn or (lambda: 0),
                               num_workers=int(self.ds.get("num_workers", 0)), pin_memory=True, **shards(trainer))
        x, y = self.tensors[split]
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
            epoch_fn=epoch_fn,
            **shards(trainer),
            channels_last=self.channels_last,
            size=self.size,
            device=y.device,
            views=self.train_views if train else 1,
        )

    def train_dataloader(self) -> TensorBatches | DataLoader:
        loader = self._loader("train", True)
        if self.trainer is not None and isinstance(loader, TensorBatches):  # the torch path restarts its epoch
            loader.progress_fn = lambda: self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return loader

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test", False)
