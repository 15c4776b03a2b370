"""Batches straight from a uint8 tensor: the fast path for 32/64 px data sets.

The whole split lives as one ``(N, H, W, 3)`` uint8 tensor on the training device. Each batch is
gathered with one index, then randomly cropped (zero padding in pixel space, as torchvision's
``RandomCrop(padding=4)``), flipped and normalised for the whole batch at once. The order of an
epoch is a permutation drawn from ``(seed, epoch)`` and the augmentation of batch b from
``(seed, epoch, b)``, so identical seeds give identical batches. The loader is *stateful* in
Lightning's sense: a checkpoint taken mid-epoch records how many batches of the epoch were
trained, and a run resumed from it continues with exactly the batches an uninterrupted run
would have seen next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, stream) alone."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % (2**63 - 1))
    return g


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of a uint8 NHWC batch, vectorised."""
    n, h, w, _ = x.shape
    if pad > 0:
        x = torch.nn.functional.pad(x, (0, 0, pad, pad, pad, pad))  # pads W then H of NHWC
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
        cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
        x = x[torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        mask = (torch.rand(n, generator=g) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(2), x)
    return x


class TensorBatches:
    """An iterable of ``(images, labels)`` batches over uint8 NHWC data (a Lightning dataloader)."""

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
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 (N, H, W, C) tensor")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment, self.pad = batch_size, shuffle, augment, pad
        self.drop_last, self.seed, self.epoch_fn = drop_last, seed, epoch_fn or (lambda: 0)
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.progress_fn: Callable[[], int] | None = None  # batches of the current epoch already trained
        self._resume_at: int = 0  # set by load_state_dict: batches of the epoch to skip on the next iter()
        dev = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32, device=dev).view(1, -1, 1, 1) * 255.0)

    def _indices(self) -> torch.Tensor:
        n = len(self.images)
        if self.shuffle:
            idx = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch_fn()))
        else:
            idx = torch.arange(n)
        if self.world_size > 1:  # every rank takes an equal, disjoint share
            per_rank = n // self.world_size
            idx = idx[self.rank * per_rank : (self.rank + 1) * per_rank]
        return idx

    def __len__(self) -> int:
        n = len(self.images) // self.world_size if self.world_size > 1 else len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW."""
        x = x.permute(0, 3, 1, 2).float()
        x = (x - self.mean) * self.inv_std
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

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
        dev = self.images.device
        for b in range(start, len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size].to(dev)
            x = self.images[sel]
            if self.augment:
                x = random_crop_flip(x, self.pad, True, epoch_generator(self.seed, epoch, stream=1 + b))
            yield self.normalise(x), self.labels[sel]
