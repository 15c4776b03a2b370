"""The classic input pipeline: a torch ``DataLoader`` over per-image PIL / torchvision transforms.

Used for ImageNet (JPEG files, decoded in worker processes) and, with ``dataset.loader=torch``,
for the in-memory 32/64 px sets, where it is the reference the device-resident loader
(:mod:`spatialprobe.data.loader`) is benchmarked against and a fallback. Epoch order comes from
stream ``(seed, order, epoch)`` here too, through :class:`EpochSampler`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from spatialprobe.run.streams import generator


def array_transform(augment: bool, mean: Sequence[float], std: Sequence[float], pad: int = 4,
                    native_size: int = 32, size: int | None = None) -> T.Compose:
    """torchvision's CIFAR pipeline: RandomCrop(pad) + flip, [Resize], ToTensor, Normalize."""
    steps: list = []
    if augment:
        steps += [T.RandomCrop(native_size, padding=pad), T.RandomHorizontalFlip()]
    if size and size != native_size:
        steps.append(T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR))
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(steps)


class Views:
    """``transform`` applied ``views`` times to the same image: independent draws of the same augmentation
    (task=augshift's two views); one view is the transform's own output."""

    def __init__(self, transform: Callable, views: int = 1):
        self.transform, self.views = transform, int(views)

    def __call__(self, image):
        return self.transform(image) if self.views == 1 else tuple(self.transform(image) for _ in range(self.views))


class ArrayImages(Dataset):
    """uint8 ``(N, H, W, 3)`` images (in memory or memory-mapped) as PIL images through ``transform``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(np.asarray(self.images[i]))), int(self.labels[i])


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` drawn from stream ``(seed, order, epoch)``: the device loader's epoch order."""

    def __init__(self, n: int, seed: int, epoch_fn: Callable[[], int]):
        self.n, self.seed, self.epoch_fn = n, seed, epoch_fn

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=generator(self.seed, "order", self.epoch_fn())).tolist())


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int, epoch_fn: Callable[[], int],
                num_workers: int, pin_memory: bool, rank: int = 0, world_size: int = 1,
                collate_fn=None) -> DataLoader:
    """A DataLoader with worker processes, pinned memory (when a GPU is used) and seeded epoch order.

    Evaluation under DDP: every image exactly once over the ranks (Lightning's own sampler would
    repeat images to even out the shares, and top-1 would count them twice).
    """
    if train:
        sampler = EpochSampler(len(dataset), seed, epoch_fn)  # Lightning shards it under DDP
    elif world_size > 1:
        from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    else:
        sampler = None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),  # worker seeds: the same for the same run seed
        collate_fn=collate_fn,  # None: torch's default
    )
