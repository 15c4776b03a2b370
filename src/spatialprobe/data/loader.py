"""Batches straight from a uint8 tensor: the fast path for 32/64 px data sets.

The whole split lives as one ``(N, H, W, 3)`` uint8 tensor on the training device (or, when it
does not fit there, as a memory-mapped array in host memory that every batch is gathered from).
Each batch is gathered with one ``index_select``, then randomly cropped (zero padding in pixel
space, as torchvision's ``RandomCrop(padding=4)``), flipped and normalised for the whole batch at
once on the device, and optionally resized to the model's input size (upsampled CIFAR). The order
of an epoch is a permutation drawn from stream ``(seed, order, epoch)`` and the augmentation of
batch b from stream ``(seed, augment, epoch, b)`` (:mod:`spatialprobe.run.streams`: no two of them
coincide), so identical seeds give identical batches. The loader is *stateful* in
Lightning's sense: a checkpoint taken mid-epoch records how many batches of the epoch were
trained, and a run resumed from it continues with exactly the batches an uninterrupted run
would have seen next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.nn import functional as F

from spatialprobe.run.streams import generator


def crop_view(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Random crops of the zero-padded uint8 NHWC batch ``x``, as an ``(N, C, H, W)`` view.

    The padded batch is unfolded into all ``(2 pad + 1)^2`` windows (a view, nothing is copied) and
    one window per image is picked with a single index, so the crop costs one gather.
    """
    n, h, w, _ = x.shape
    padded = F.pad(x, (0, 0, pad, pad, pad, pad))  # pads W then H of NHWC
    windows = padded.unfold(1, h, 1).unfold(2, w, 1)  # (n, 2p+1, 2p+1, c, h, w)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    return windows[torch.arange(n, device=x.device), dy, dx]


def flip_rows(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Indices of the images to mirror (each with probability 1/2)."""
    return (torch.rand(n, generator=g) < 0.5).nonzero().squeeze(1).to(device)


class TensorBatches:
    """An iterable of ``(images, labels)`` batches over uint8 NHWC data (a Lightning dataloader).

    ``images`` normally sits on the training device. It may also be a CPU tensor (for example over
    a memory-mapped cache) while ``device`` is a GPU: then each batch is gathered in host memory
    and copied over, and everything after the gather still runs on the device. ``size`` resizes
    every batch (bilinear) after crop and flip, so the augmentation is the same at every size.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        shuffle: bool = False,
        augment: bool = False,
        pad: int = 4,
        drop_last: bool = False,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        size: int | None = None,
        device: torch.device | str | None = None,
        views: int = 1,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 (N, H, W, C) tensor")
        self.images = images
        self.device = torch.device(device) if device is not None else images.device
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.pad = batch_size, shuffle, augment, pad
        self.drop_last, self.seed, self.epoch_fn = drop_last, seed, epoch_fn or (lambda: 0)
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.size = size if size and size != images.shape[1] else None
        self.views = int(views)  # 2: every image twice, each view its own crop and flip (task=augshift)
        self.progress_fn: Callable[[], int] | None = None  # batches of the current epoch already trained
        self._resume_at: int = 0  # set by load_state_dict: batches of the epoch to skip on the next iter()
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) * 255.0)

    def _indices(self) -> torch.Tensor:
        n = len(self.images)
        if self.shuffle:
            idx = torch.randperm(n, generator=generator(self.seed, "order", self.epoch_fn()))
        else:
            idx = torch.arange(n)
        if self.world_size > 1:  # disjoint shares: see _shard_size
            if self.drop_last:
                per_rank = n // self.world_size
                idx = idx[self.rank * per_rank : (self.rank + 1) * per_rank]
            else:
                idx = idx[self.rank :: self.world_size]
        return idx

    def _shard_size(self) -> int:
        """Images of this rank. Training (``drop_last``): an equal share for every rank (DDP steps in
        lockstep); evaluation: every image exactly once, shares differing by at most one image."""
        n, ws = len(self.images), self.world_size
        return n // ws if self.drop_last else len(range(self.rank, n, ws))

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _gather(self, sel: torch.Tensor) -> torch.Tensor:
        x = self.images.index_select(0, sel)
        if x.device != self.device:  # host-resident split: copy the gathered batch over
            if self.device.type == "cuda":
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=True)
        return x

    def transform(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """uint8 NHWC batch -> (cropped, flipped) normalised float NCHW batch, on the device."""
        augment = self.augment and g is not None
        view = crop_view(x, self.pad, g) if augment and self.pad > 0 else x.permute(0, 3, 1, 2)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty(view.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
        out.copy_(view)
        if augment:
            rows = flip_rows(len(x), g, x.device)
            out[rows] = out[rows].flip(-1)
        out.sub_(self.mean).mul_(self.inv_std)
        if self.size is not None:
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                antialias=self.size < x.shape[1])
            out = out.contiguous(memory_format=fmt)
        return out

    def augment_generator(self, epoch: int, batch: int, view: int = 1) -> torch.Generator | None:
        """The generator of batch ``batch``'s crop and flip (None without augmentation); ``view=2``: the
        independent draw of the second view (the first view is the single-view batch itself)."""
        if not self.augment:
            return None
        return generator(self.seed, "augment" if view == 1 else "augment_view2", epoch, batch, len(self))

    def augmented(self, x: torch.Tensor, epoch: int, batch: int):
        """Batch ``batch``'s images: one view, or with ``views=2`` a pair ``(view 1, view 2)``, each an
        independent draw of the same crop and flip from the same un-augmented images."""
        if self.views == 1:
            return self.transform(x, self.augment_generator(epoch, batch))
        return tuple(self.transform(x, self.augment_generator(epoch, batch, v)) for v in (1, 2))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW, without augmentation."""
        return self.transform(x)

    # Lightning's stateful-iterable protocol (used for mid-epoch checkpoints)
    def state_dict(self) -> dict:
        done = self.progress_fn() if self.progress_fn is not None else 0
        return {"epoch": int(self.epoch_fn()), "batches_done": int(done)}

    def load_state_dict(self, state: dict) -> None:
        done = int(state.get("batches_done", 0))
        self._resume_at = done if 0 < done < len(self) and int(state.get("epoch", -1)) == int(self.epoch_fn()) else 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start, self._resume_at = self._resume_at, 0
        epoch = self.epoch_fn()
        idx = self._indices()
        idx = idx.to(self.images.device)
        for b in range(start, len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.augmented(self._gather(sel), epoch, b), self.labels[sel.to(self.device)]
