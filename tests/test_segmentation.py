"""Cityscapes-format loading, mIoU per region, and the DeepLabv3 probe (random weights, tiny fake fixture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakedata import CITYSCAPES_IDS, make_cityscapes
from spatialprobe.data.cityscapes import IMAGENET_MEAN, IMAGENET_STD, CityscapesBatches, pedestrian_side
from spatialprobe.errors import DataError
from spatialprobe.position.probe import channel_scores, rank, switch_off_study
from spatialprobe.position.segmentation import RegionIoU, SegmentationProbe, build_deeplab, region_masks


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


def test_regions_are_the_halves_and_the_centre_half_of_the_width():
    m = region_masks(2048)  # P: "each region ... has a spatial resolution of 1024 x 1024 pixels"
    assert [int(v.sum()) for v in m.values()] == [1024, 1024, 1024]
    assert m["left"][:1024].all() and m["right"][1024:].all() and m["centre"][512:1536].all()
    assert not m["centre"][:512].any() and not m["centre"][1536:].any()  # overlaps both sides equally
    small = region_masks(64)  # resized images: the same fractions of the width
    assert small["left"].nonzero().flatten().tolist() == list(range(32))
    assert small["centre"].nonzero().flatten().tolist() == list(range(16, 48))


def test_miou_per_region_by_hand():
    target = torch.tensor([[[0, 0, 0, 0, 1, 1, 2, 2]]])  # width 8: left 0-3, centre 2-5, right 4-7
    pred = torch.tensor([[[0, 0, 1, 1, 1, 0, 2, 2]]])
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    m = RegionIoU(3)
    m.update(logits, target)
    out = m.compute()
    # left: class 0 IoU 2/4, class 1 0/2 (only predicted), class 2 absent from both: not counted
    assert out["left"] == pytest.approx(25.0)
    assert out["centre"] == pytest.approx(100 * (0 / 3 + 1 / 4) / 2)       # class 0: 0/3, class 1: 1/4
    assert out["right"] == pytest.approx(100 * (0 + 1 / 2 + 1) / 3)       # class 0 predicted once, 1: 1/2, 2: 2/2
    assert out["overall"] == pytest.approx(100 * (2 / 5 + 1 / 4 + 1) / 3)


def test_pedestrian_side_and_the_val_left_right_subsets(tmp_path):
    y = torch.full((4, 8), 0)
    assert pedestrian_side(y) is None
    y[1, 2] = 11                           # a person in the left half
    assert pedestrian_side(y) == "left"
    y[2, 3] = 12                           # and a rider, still left
    assert pedestrian_side(y) == "left"
    y[0, 4] = 11
    assert pedestrian_side(y) == "both"
    y[1, 2] = y[2, 3] = 0
    assert pedestrian_side(y) == "right"
    root = make_cityscapes(tmp_path / "cs", splits=("val",), per_split=6, pedestrians=["left", "right", "left",
                                                                                        None, "both", "right"])
    left = CityscapesBatches(root, "val", batch_size=8, side="left")
    right = CityscapesBatches(root, "val", batch_size=8, side="right")
    def made(batches):  # the image numbers the fixture wrote into the selected file names
        return sorted(int(Path(batches.data.images[i]).name.split("_")[1]) for i in batches.indices)

    assert made(left) == [0, 2] and made(right) == [1, 5]
    for batches, side in ((left, "left"), (right, "right")):
        _, y, _ = next(iter(batches))
        assert all(pedestrian_side(t) == side for t in y)
    with pytest.raises(DataError, match="only in the left half"):
        CityscapesBatches(make_cityscapes(tmp_path / "none", splits=("val",), per_split=1, pedestrians=[None]),
                          "val", side="left")


def test_a_users_image_list_chooses_the_val_left_and_right_images(tmp_path):
    """P 4.2: the authors released their 42 val-left / val-right images; a list with sides is taken as it is
    (even against the labels), a list without sides is split into halves by the labels."""
    root = make_cityscapes(tmp_path / "cs", splits=("val",), per_split=6, pedestrians=["left", "right", "left",
                                                                                        None, "both", "right"])

    def made(batches):
        return sorted(int(Path(batches.data.images[i]).name.split("_")[1]) for i in batches.indices)

    sided = tmp_path / "sided.txt"
    sided.write_text("# name side\nfakecity_000003_000019 left\nfakecity_000000_000019_leftImg8bit.png left\n"
                     "val/fakecity/fakecity_000004_000019 right\n")
    assert made(CityscapesBatches(root, "val", side="left", image_list=sided)) == [0, 3]
    assert made(CityscapesBatches(root, "val", side="right", image_list=sided)) == [4]
    plain = tmp_path / "plain.txt"
    plain.write_text("fakecity_000001_000019\nfakecity_000002_000019\nfakecity_000004_000019\n")
    assert made(CityscapesBatches(root, "val", side="left", image_list=plain)) == [2]
    assert made(CityscapesBatches(root, "val", side="right", image_list=plain)) == [1]
    bad = tmp_path / "bad.txt"
    bad.write_text("fakecity_000009_000019 left\n")
    with pytest.raises(DataError, match="1 listed image.*not in the val split.*fakecity_000009_000019"):
        CityscapesBatches(root, "val", side="left", image_list=bad)
    bad.write_text("fakecity_000001_000019 up\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected '<image name> \[left\|right\]'"):
        CityscapesBatches(root, "val", side="left", image_list=bad)


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


@pytest.mark.parametrize("wrap", ["plain", "model_state", "state_dict", "model"])
def test_build_deeplab_takes_a_state_dict_in_every_documented_wrapper(wrap, tmp_path, monkeypatch):
    """docs/position.md: a state dict of deeplabv3_resnet50, bare or in a ``model_state`` / ``state_dict`` /
    ``model`` wrapper, with or without DDP's ``module.`` prefixes, an aux head's keys dropped; the file is read
    through ``torch.load`` (stubbed here: 160 MB per wrapper on disk would be the only cost)."""
    torch.manual_seed(0)
    saved = build_deeplab(19)
    state = {(f"module.{k}" if wrap != "plain" else k): v for k, v in saved.state_dict().items()}
    state[("module." if wrap != "plain" else "") + "aux_classifier.0.weight"] = torch.zeros(1)  # trained with aux_loss
    content = state if wrap == "plain" else {wrap: state, "epoch": 3}
    path = tmp_path / "weights.pth"
    path.write_bytes(b"stub")
    monkeypatch.setattr(torch, "load", lambda f, **kw: content if str(f) == str(path) else pytest.fail(str(f)))
    torch.manual_seed(1)
    loaded = build_deeplab(19, path)
    got, want = loaded.state_dict(), saved.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert not loaded.training
    if wrap != "plain":
        return
    with pytest.raises(DataError, match=r"not a state dict of deeplabv3_resnet50 with 21 classes \(Error"):
        build_deeplab(21, path)
    with pytest.raises(DataError, match="no such weights file"):
        build_deeplab(19, tmp_path / "absent.pth")
