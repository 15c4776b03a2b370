"""spatial_shuffle: permute the h*w positions of every channel independently.

One random draw and one gather per forward: random keys per (channel, position) are sorted
into a permutation per channel (``argsort``), shared by all samples of the batch, and applied
with ``torch.gather`` on the input's device, in the input's memory layout (NCHW or
channels_last); gradients flow back through the permutation (a gather with its inverse).
``permute_positions`` also serves patch_shuffle: positions then only move inside their tile.
"""

from __future__ import annotations

import torch

from spatialprobe.methods.base import StochasticOp, switches

#: This method's kind, read without importing this module by spatialprobe.config.facts.
KIND = "op"


def _tile_ids(h: int, w: int, patch: int | None, device: torch.device) -> torch.Tensor | None:
    """Tile index of every position (row-major) for p x p tiles; None when one tile covers the map."""
    if patch is None or (patch >= h and patch >= w):
        return None
    rows = torch.arange(h, device=device) // patch
    cols = torch.arange(w, device=device) // patch
    return (rows[:, None] * (-(-w // patch)) + cols[None, :]).flatten()


def position_permutation(c: int, h: int, w: int, patch: int | None, device: torch.device) -> torch.Tensor:
    """A (c, h*w) index: for each channel, the source position of every output position.

    Sorting ``tile_id + u`` (u uniform in [0, 1)) lists the positions tile by tile, in a random
    order inside each tile; writing that list back into the tile-by-tile slots keeps every
    position inside its own tile. Without tiles this is ``argsort(u)``, a uniform permutation.
    """
    keys = torch.rand(c, h * w, device=device)
    tiles = _tile_ids(h, w, patch, device)
    if tiles is None:
        return keys.argsort(dim=1)
    order = (keys + tiles.to(keys.dtype)).argsort(dim=1)  # sources, grouped by tile
    slots = tiles.argsort(stable=True)  # destinations, grouped by tile, same group sizes
    index = torch.empty_like(order)
    index[:, slots] = order
    return index


class _GatherPermutation(torch.autograd.Function):
    """out[..., p, ...] = x[..., index[p], ...] along ``dim`` (the positions), one permutation per channel.

    ``flat`` is (N, C, HW) with ``dim=2`` and ``index`` (C, HW), or (N, HW, C) with ``dim=1`` and
    ``index`` (HW, C): the index has the shape of one sample, and its position axis is ``dim - 1``.
    Autograd's backward of a gather is a scatter-add; for a permutation the gradient is simply the
    gather with the inverse permutation, which is cheaper and deterministic on every device.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, index: torch.Tensor, dim: int = 2) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.dim = dim
        return torch.gather(flat, dim, index.unsqueeze(0).expand_as(flat))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        axis = ctx.dim - 1
        positions = torch.arange(index.shape[axis], device=index.device)
        positions = (positions[:, None] if axis == 0 else positions[None, :]).expand_as(index)
        inverse = torch.empty_like(index).scatter_(axis, index, positions)
        return torch.gather(grad, ctx.dim, inverse.unsqueeze(0).expand_as(grad)), None, None


def permute_positions(x: torch.Tensor, patch: int | None = None) -> torch.Tensor:
    """Shuffle the positions of each channel of an (N, C, H, W) tensor (shared across the batch).

    A channels_last input is permuted in its own memory layout (a (N, HW, C) view, no copy) and the
    result stays channels_last, so the next convolution needs no conversion; the numbers are the
    same in both layouts.
    """
    n, c, h, w = x.shape
    if h * w == 1:
        return x
    index = position_permutation(c, h, w, patch, x.device)
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        return _GatherPermutation.apply(flat, index.t(), 1).view(n, h, w, c).permute(0, 3, 1, 2)
    return _GatherPermutation.apply(x.reshape(n, c, h * w), index, 2).view(n, c, h, w)


class SpatialShuffle(StochasticOp):
    """Randomly permute each channel's positions, a fresh permutation every forward."""

    def apply_op(self, x: torch.Tensor) -> torch.Tensor:
        return permute_positions(x)


def make_op(cfg) -> SpatialShuffle:
    """A fresh op for one shuffle site, from the method's config (``method.train`` / ``method.test``)."""
    return SpatialShuffle(**switches(cfg))
