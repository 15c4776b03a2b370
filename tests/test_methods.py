"""The ops themselves: what a shuffle may and may not do to an activation map."""

from __future__ import annotations

import pytest
import torch

from spatialprobe.methods.channel_shuffle import ChannelShuffle
from spatialprobe.methods.gap_fc import BatchNorm1x1, Linear1x1
from spatialprobe.methods.patch_shuffle import PatchShuffle
from spatialprobe.methods.spatial_shuffle import SpatialShuffle, permute_positions


def coded(n=3, c=5, h=6, w=6) -> torch.Tensor:
    """Every (sample, channel, position) holds a distinct value that encodes it."""
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w)


def source_positions(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """For a coded x: the flat source position of every output activation, (N, C, HW)."""
    n, c, h, w = x.shape
    return (out.reshape(n, c, h * w) - x.reshape(n, c, h * w)[:, :, :1]).long()


def test_spatial_shuffle_is_a_per_channel_permutation_of_positions():
    x = coded()
    out = SpatialShuffle()(x)
    src = source_positions(x, out)
    n, c, hw = src.shape
    # each channel keeps its own values (a permutation of its positions), sample by sample
    for i in range(n):
        for j in range(c):
            assert sorted(src[i, j].tolist()) == list(range(hw))
    # positions moved, differently per channel, identically for every sample in the batch
    assert (src != torch.arange(hw)).any(dim=2).all()
    assert len({tuple(src[0, j].tolist()) for j in range(c)}) == c
    assert torch.equal(src[0], src[1]) and torch.equal(src[0], src[2])


def test_spatial_shuffle_is_fresh_every_call_and_gradients_flow_back_through_it():
    op = SpatialShuffle()
    x = coded().requires_grad_(True)
    a, b = op(x), op(x)
    assert not torch.equal(a, b)
    weight = torch.randn_like(a)
    (a * weight).sum().backward()
    src = source_positions(x.detach(), a.detach())
    # d out[p] / d x[src[p]] = 1: the gradient is the weight scattered back to the source positions
    expected = torch.zeros(3, 5, 36).scatter_(2, src, weight.reshape(3, 5, 36)).view_as(x)
    assert torch.equal(x.grad, expected)


def test_patch_shuffle_with_patch_at_least_the_map_is_exactly_the_global_shuffle():
    x = torch.randn(4, 8, 8, 8)
    for p in (8, 9, 100):
        torch.manual_seed(7)
        global_out = SpatialShuffle()(x)
        torch.manual_seed(7)
        assert torch.equal(PatchShuffle(p)(x), global_out)


@pytest.mark.parametrize("h,w,p", [(8, 8, 2), (8, 8, 4), (6, 6, 4), (7, 5, 2), (4, 4, 3)])
def test_patch_shuffle_never_moves_an_activation_out_of_its_tile(h, w, p):
    x = coded(2, 6, h, w)
    src = source_positions(x, PatchShuffle(p)(x))
    dst = torch.arange(h * w)
    tile = lambda pos: (pos // w) // p * 1000 + (pos % w) // p  # noqa: E731
    assert torch.equal(tile(src), tile(dst).expand_as(src))
    for j in range(6):  # still a permutation of each channel
        assert sorted(src[0, j].tolist()) == list(range(h * w))
    assert (src != dst).any()  # and it does move things


def test_patch_shuffle_covers_every_arrangement_inside_a_tile():
    x = coded(1, 1, 2, 2)
    seen = {tuple(source_positions(x, PatchShuffle(2)(x))[0, 0].tolist()) for _ in range(400)}
    assert len(seen) == 24  # all 4! orders of a 2x2 tile appear


def test_channel_shuffle_permutes_whole_maps():
    x = coded()
    out = ChannelShuffle()(x)
    perm = [int(out[0, j, 0, 0] // 36) for j in range(5)]
    assert sorted(perm) == list(range(5))
    for j, src in enumerate(perm):
        assert torch.equal(out[:, j], x[:, src])  # same for all positions and samples
    assert len({tuple(int(ChannelShuffle()(x)[0, j, 0, 0] // 36) for j in range(5)) for _ in range(20)}) > 1


@pytest.mark.parametrize("op", [SpatialShuffle, ChannelShuffle, lambda **kw: PatchShuffle(2, **kw)])
def test_train_and_test_switches(op):
    x = torch.randn(2, 4, 4, 4)
    m = op(train=True, test=False)
    assert not torch.equal(m.train()(x), x) and torch.equal(m.eval()(x), x)
    m = op(train=False, test=True)
    assert torch.equal(m.train()(x), x) and not torch.equal(m.eval()(x), x)


def test_one_by_one_map_and_device_of_the_index(monkeypatch):
    """A 1x1 map has one position: returned as it is, nothing drawn. On a larger map the permutation index
    is made on the input's device (here the meta device, as the suite has no GPU: an index drawn on the CPU
    would show as such), in both memory layouts, with and without tiles."""
    from spatialprobe.methods import spatial_shuffle

    x = torch.randn(2, 3, 1, 1)
    state = torch.get_rng_state()
    assert permute_positions(x) is x and torch.equal(torch.get_rng_state(), state)
    seen = []
    real = spatial_shuffle._GatherPermutation.apply
    monkeypatch.setattr(spatial_shuffle._GatherPermutation, "apply",
                        lambda flat, index, dim: seen.append(index.device) or real(flat, index, dim))
    for patch in (None, 2):
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.empty(2, 3, 4, 6, device="meta").contiguous(memory_format=layout).requires_grad_(True)
            out = permute_positions(x, patch)
            out.sum().backward()
            assert out.device.type == x.grad.device.type == "meta" and out.shape == x.shape
    assert [d.type for d in seen] == ["meta"] * 4


def test_fc_equivalents_accept_maps_and_vectors():
    fc, bn = Linear1x1(4, 3), BatchNorm1x1(3)
    x = torch.randn(5, 4, 1, 1)
    y = bn(fc(x))
    assert y.shape == (5, 3, 1, 1)
    assert torch.allclose(fc(x)[:, :, 0, 0], fc(x.flatten(1)))


def test_shuffle_backward_matches_autograd_gradcheck():
    from spatialprobe.methods.spatial_shuffle import _GatherPermutation, position_permutation

    x = torch.randn(2, 3, 12, dtype=torch.float64, requires_grad=True)
    index = position_permutation(3, 3, 4, 2, x.device)
    assert torch.autograd.gradcheck(lambda t: _GatherPermutation.apply(t, index), (x,))
    positions_last = torch.randn(2, 12, 3, dtype=torch.float64, requires_grad=True)  # (N, HW, C): channels_last
    assert torch.autograd.gradcheck(lambda t: _GatherPermutation.apply(t, index.t(), 1), (positions_last,))


@pytest.mark.parametrize("patch", [None, 2])
def test_shuffle_of_a_channels_last_input_stays_channels_last_with_the_same_numbers(patch):
    x = torch.randn(3, 5, 4, 6)
    xl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    x.requires_grad_(True)
    torch.manual_seed(7)
    out = permute_positions(x, patch)
    torch.manual_seed(7)
    out_last = permute_positions(xl, patch)
    assert out_last.is_contiguous(memory_format=torch.channels_last) and not out_last.is_contiguous()
    assert torch.equal(out, out_last) and not torch.equal(out, x)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_last.backward(grad)
    assert torch.equal(x.grad, xl.grad)
