"""Cityscapes-format loading, mIoU per region, and the DeepLabv3 probe (random weights, tiny fake fixture)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fakedata import CITYSCAPES_IDS, make_cityscapes
from spatialprobe.errors import DataError
from spatialprobe.position import channel_scores, rank, switch_off_study
from spatialprobe.segmentation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CityscapesBatches,
    RegionIoU,
    SegmentationProbe,
    build_deeplab,
)


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"), per_split=3)


def test_fake_cityscapes_loads_with_train_ids(cityscapes):
    batches = CityscapesBatches(cityscapes, "val", batch_size=2)
    assert len(batches) == 2
    items = list(batches)
    x, y, region = items[0]
    assert x.shape == (2, 3, 32, 64) and y.shape == (2, 32, 64) and region is None and len(items[1][0]) == 1
    raw = np.asarray(Image.open(sorted((cityscapes / "gtFine" / "val" / "fakecity").glob("*labelIds.png"))[0]))
    expected = np.vectorize(CITYSCAPES_IDS.get)(raw)
    assert np.array_equal(y[0].numpy(), expected)
    assert set(y.unique().tolist()) == {0, 1, 11, 13, 255}
    img = np.asarray(Image.open(sorted((cityscapes / "leftImg8bit" / "val" / "fakecity").glob("*.png"))[0]))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x[0], (torch.from_numpy(img.copy()).permute(2, 0, 1) / 255.0 - mean) / std, atol=1e-5)
    small = next(iter(CityscapesBatches(cityscapes, "val", batch_size=1, size=[16, 32], limit=1)))
    assert small[0].shape == (1, 3, 16, 32) and set(small[1].unique().tolist()) <= {0, 1, 11, 13, 255}


def test_missing_cityscapes_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match=r"no Cityscapes val split.*leftImg8bit/val/<city>"):
        CityscapesBatches(tmp_path, "val")


def test_miou_per_region_by_hand():
    target = torch.tensor([[[0, 0, 1, 1, 2, 2]]])                 # width 6: thirds are columns 0-1, 2-3, 4-5
    pred = torch.tensor([[[0, 0, 1, 0, 0, 255]]])
    logits = torch.nn.functional.one_hot(pred.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    logits[..., 5] = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1)  # predict class 1 at the last pixel
    m = RegionIoU(3)
    m.update(logits, target)
    out = m.compute()
    assert out["left"] == 100.0                                   # class 0 exactly right
    # centre: pred (1, 0) vs target (1, 1): class 1 IoU 1/2, class 0 IoU 0/1 -> mean over present classes = 25
    assert out["centre"] == pytest.approx(25.0)
    assert out["right"] == 0.0                                    # class 2 never predicted
    # overall: class 0: tp 2, fp 2 -> 1/2; class 1: tp 1, fp 1, fn 1 -> 1/3; class 2: 0
    assert out["overall"] == pytest.approx(100 * (1 / 2 + 1 / 3 + 0) / 3, abs=1e-3)


def test_deeplab_probe_ranks_and_switches_off_backbone_channels(cityscapes):
    torch.manual_seed(0)
    model = build_deeplab(19)
    probe = SegmentationProbe(model)
    seen = []
    model.classifier.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x, y, _ = next(iter(CityscapesBatches(cityscapes, "val", batch_size=2)))
    with torch.no_grad():
        feats = probe.features(x)
        assert probe.latent(feats).shape == (2, 2048)
        out = probe.head(feats, torch.tensor([3, 7]))
    assert out.shape == (2, 19, 32, 64)
    assert not seen[-1][:, [3, 7]].any() and torch.equal(seen[-1][:, 5], feats[0][:, 5])
    scores = channel_scores(probe, [x])
    order = rank(scores)
    # the scores, computed straight from the backbone: mean over images of |pool(f(x)) - pool(f(flip x))|
    with torch.no_grad():
        pooled = lambda images: model.backbone(images)["out"].mean(dim=(2, 3))  # noqa: E731
        expected = (pooled(x) - pooled(x.flip(-1))).abs().mean(0)
    assert len(order) == 2048 and torch.allclose(scores, expected, rtol=1e-4, atol=1e-6)
    assert order[:5] == torch.argsort(expected, descending=True)[:5].tolist()
    batches = lambda: CityscapesBatches(cityscapes, "val", batch_size=2)  # noqa: E731
    study = switch_off_study(probe, batches, order, [16], 2, lambda: RegionIoU(19))

    def miou(switched_off=None):
        """mIoU of the whole DeepLab forward, the backbone's output channels zeroed by a hook."""
        hook = model.backbone.register_forward_hook(
            lambda m, inp, out: {**out, "out": out["out"].index_fill(1, torch.tensor(switched_off), 0.0)}
        ) if switched_off else None
        metric = RegionIoU(19)
        with torch.no_grad():
            for xb, yb, _ in batches():
                metric.update(model(xb)["out"], yb)
        if hook:
            hook.remove()
        return metric.compute()

    assert study["none"] == pytest.approx(miou(), abs=1e-4)
    assert study["n"]["16"]["top"] == pytest.approx(miou(order[:16]), abs=1e-4)
    assert set(study["none"]) == {"overall", "left", "centre", "right"}
