"""Position-channel ranking and switch-off on synthetic models with planted position channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spatialprobe.data.grid import paste, region_of
from spatialprobe.errors import ConfigError
from spatialprobe.position.probe import (
    ClassifierProbe,
    RegionAccuracy,
    channel_scores,
    flip_kernels,
    mask_channels,
    rank,
    require_pooled_latent,
    switch_off_study,
)

LEFT, RIGHT = 2, 5  # planted channels


class Planted(nn.Module):
    """8 latent channels: channel LEFT weighs the image by a ramp falling to the right (fires when the object is
    on the left), RIGHT by the mirrored ramp, every other channel by a constant (position-blind).
    The head reads the two position channels: class 0 = object on the left, 1 = on the right."""

    def __init__(self, width: int = 96):
        super().__init__()
        ramp = torch.linspace(1.0, 0.0, width)
        weights = torch.ones(8, width)
        weights[LEFT], weights[RIGHT] = ramp, ramp.flip(0)
        self.register_buffer("weights", weights.view(1, 8, 1, width))
        self.head = nn.Linear(8, 2, bias=False)
        self.head.weight.data.zero_()
        self.head.weight.data[0, LEFT] = self.head.weight.data[1, RIGHT] = 1.0

    def forward_features(self, x):
        return x.abs().mean(1, keepdim=True) * self.weights

    def pool(self, f):
        return f.mean(dim=(2, 3))

    def forward_head(self, z):
        return self.head(z)

    def forward(self, x):
        return self.forward_head(self.pool(self.forward_features(x)))


def grid_images(count: int, cols: list[int], seed: int = 0, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, 32, 32, generator=g) + 0.5
    rows = torch.randint(n, (count,), generator=g)
    col = torch.tensor(cols)[torch.randint(len(cols), (count,), generator=g)]
    cells = rows * n + col
    return paste(images, cells, n), cells


def test_overall_ranking_finds_the_planted_position_channels():
    probe = ClassifierProbe(Planted())
    x, _ = grid_images(40, [0, 1, 2])
    scores = channel_scores(probe, [x[:20], x[20:]])
    assert set(rank(scores)[:2]) == {LEFT, RIGHT}
    assert scores[[i for i in range(8) if i not in (LEFT, RIGHT)]].abs().max() < 1e-6  # flip-blind channels score 0


def test_region_rankings_are_signed():
    probe = ClassifierProbe(Planted())
    left, _ = grid_images(30, [0])
    right, _ = grid_images(30, [2])
    assert rank(channel_scores(probe, [left], signed=True))[0] == LEFT
    assert rank(channel_scores(probe, [right], signed=True))[0] == RIGHT
    assert channel_scores(probe, [left], signed=True)[RIGHT] < 0


class ConvNet(nn.Module):
    """stride-1 convs with symmetric zero padding, ReLU, global average pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 5, padding=2), nn.ReLU())
        self.fc = nn.Linear(5, 3)

    def forward_features(self, x):
        return self.features(x)

    def pool(self, f):
        return f.mean(dim=(2, 3))

    def forward_head(self, z):
        return self.fc(z)


def test_kernel_flip_mirrors_the_network():
    torch.manual_seed(0)
    net = ConvNet()
    flipped = flip_kernels(net)
    x = torch.randn(4, 3, 12, 12)
    # mirrored kernels on x = the original network on the mirrored image, mirrored back
    assert torch.allclose(flipped.forward_features(x), net.forward_features(x.flip(-1)).flip(-1), atol=1e-5)
    assert torch.equal(net.features[0].weight, flip_kernels(flipped).features[0].weight)
    probe = ClassifierProbe(net)
    by_kernel = channel_scores(probe, [x], variant="kernel_flip", flipped=probe.with_model(flipped))
    by_image = channel_scores(probe, [x])
    assert torch.allclose(by_kernel, by_image, atol=1e-5) and by_image.sum() > 0


def test_switch_off_zeroes_exactly_the_chosen_channels():
    z = torch.randn(4, 8)
    out = mask_channels(z, torch.tensor([1, 6]))
    assert torch.equal(out[:, [1, 6]], torch.zeros(4, 2))
    keep = [0, 2, 3, 4, 5, 7]
    assert torch.equal(out[:, keep], z[:, keep]) and not torch.equal(z[:, [1, 6]], torch.zeros(4, 2))
    fmap = torch.randn(2, 8, 3, 3)
    assert torch.equal(mask_channels(fmap, torch.tensor([4]))[:, 4], torch.zeros(2, 3, 3))
    seen = []
    model = Planted()
    model.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    probe = ClassifierProbe(model)
    x, _ = grid_images(5, [0, 2])
    feats = probe.features(x)
    probe.head(feats, torch.tensor([LEFT]))
    assert torch.equal(seen[-1][:, LEFT], torch.zeros(5)) and torch.equal(seen[-1][:, RIGHT], feats[:, RIGHT])


def test_switch_off_study_top_channels_versus_random_per_region():
    model = Planted()
    probe = ClassifierProbe(model)
    x, cells = grid_images(60, [0, 2], seed=1)
    target = (cells % 3 == 2).long()  # 0 = left, 1 = right

    def batches():
        yield x, target, region_of(cells, 3)

    ranking = [LEFT, RIGHT, 0, 1, 3, 4, 6, 7]
    study = switch_off_study(probe, batches, ranking, [1, 2], draws=4, new_metric=RegionAccuracy, seed=0)
    assert study["none"]["overall"] == 100.0 and study["none"]["left"] == 100.0
    assert "centre" not in study["none"]  # no object in the centre column
    top1 = study["n"]["1"]["top"]
    assert top1["left"] < 60.0 and top1["right"] == 100.0  # the "left" channel off: left objects are lost
    assert study["n"]["2"]["top"]["right"] == 0.0  # both off: every logit 0, everything is "left"
    rnd = study["n"]["1"]["random"]["overall"]
    assert rnd["mean"] > top1["overall"] and len(study["n"]["1"]["random_draws"]) == 4
    assert all(len(c) == 1 for c in study["n"]["1"]["random_channels"])


def test_n_larger_than_the_latent_is_refused():
    with pytest.raises(ConfigError) as err:
        switch_off_study(ClassifierProbe(Planted()), lambda: [], list(range(8)), [4, 9], 1, RegionAccuracy)
    assert err.value.key == "top_n" and err.value.value == 9 and "8 channels" in str(err.value)


def test_ranking_needs_a_pooled_latent():
    assert require_pooled_latent(ConvNet(), 16) == 5
    with pytest.raises(ConfigError, match="has no pooled latent"):
        require_pooled_latent(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 16)

    class FlatFeatures(ConvNet):  # e.g. every unit turned fully connected: the features are already a vector
        def forward_features(self, x):
            return self.features(x).mean(dim=(2, 3))

        def pool(self, f):
            return f

    with pytest.raises(ConfigError, match="no pooled latent: its last features are"):
        require_pooled_latent(FlatFeatures(), 16)
