"""The device-resident loader against the torchvision DataLoader path; upsampled CIFAR-100."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from conftest import compose_train
from spatialprobe.data import build_datamodule
from spatialprobe.data.loader import TensorBatches
from spatialprobe.data.torchpath import array_transform
from spatialprobe.errors import ConfigError
from spatialprobe.train import validate

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def cifar_cfg(root, *extra, name="cifar10"):
    return compose_train(f"dataset={name}", f"dataset.root={root}", "dataset.download=false", "dataset.verify=false",
                         "recipe.batch_size=16", *extra)


def epoch(loader, e):
    if hasattr(loader, "epoch_fn"):
        loader.epoch_fn = lambda: e
    else:
        loader.sampler.epoch_fn = lambda: e
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_identical_seeds_identical_batches_new_order_every_epoch(fake_cifar10):
    def run(seed, e):
        dm = build_datamodule(cifar_cfg(fake_cifar10, f"seed={seed}"))
        dm.setup()
        return epoch(dm.train_dataloader(), e)

    x0, y0 = run(0, 0)
    x0b, y0b = run(0, 0)
    assert torch.equal(x0, x0b) and torch.equal(y0, y0b)  # augmentation included
    x1, y1 = run(0, 1)
    assert not torch.equal(y0, y1) and sorted(y0.tolist()) == sorted(y1.tolist())
    assert not torch.equal(run(1, 0)[1], y0)


def test_device_and_torch_paths_give_the_same_batches_without_augmentation(fake_cifar10):
    out = {}
    for loader in ("device", "torch"):
        dm = build_datamodule(cifar_cfg(fake_cifar10, f"dataset.loader={loader}", "dataset.augment=false"))
        dm.setup()
        out[loader] = [epoch(dm.train_dataloader(), 3), epoch(dm.test_dataloader(), 0)]
    for (xd, yd), (xt, yt) in zip(out["device"], out["torch"], strict=True):
        assert torch.equal(yd, yt)  # the same epoch order from (seed, epoch)
        assert xd.shape == xt.shape and torch.allclose(xd, xt, atol=1e-5)  # ToTensor + Normalize


def offsets_and_flips(batch: torch.Tensor, image: torch.Tensor, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Recover (dy * (2 pad + 1) + dx, flipped) of every crop of ``image`` in ``batch`` (float NCHW)."""
    c, h, w = image.shape
    padded = F.pad(image, (pad, pad, pad, pad))
    cands = torch.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)])
    cands = torch.cat([cands, cands.flip(-1)])  # (2 * 81, c, h, w)
    dist = torch.cdist(batch.flatten(1).double(), cands.flatten(1).double())
    best = dist.argmin(1)
    assert (dist.min(1).values < 1e-3).all(), "a sample is not a crop (+ flip) of the image"
    k = (2 * pad + 1) ** 2
    return (best % k).numpy(), (best >= k).numpy()


def test_augmentation_distribution_matches_torchvision():
    n, pad = 3000, 4
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, size=(32, 32, 3), dtype=np.uint8)  # no zeros: padding is visible
    device = TensorBatches(torch.from_numpy(np.repeat(img[None], n, 0)), torch.zeros(n, dtype=torch.long), n,
                           [0, 0, 0], [1, 1, 1], shuffle=True, augment=True, seed=0)
    xd, _ = next(iter(device))
    tf = array_transform(True, [0, 0, 0], [1, 1, 1], pad=pad)
    torch.manual_seed(0)
    xt = torch.stack([tf(Image.fromarray(img)) for _ in range(n)])
    reference = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    counts = {}
    for name, x in (("device", xd), ("torch", xt)):
        off, flip = offsets_and_flips(x, reference, pad)
        counts[name] = np.bincount(off, minlength=81)
        assert 0.45 < flip.mean() < 0.55, (name, flip.mean())
        assert counts[name].min() > 0  # every offset in 0..2 pad on both axes occurs
        # uniform over the 81 offsets: chi-square with 80 degrees of freedom, p ~ 1e-4 at 140
        expected = n / 81
        assert ((counts[name] - expected) ** 2 / expected).sum() < 140, name
    # and the two samplers agree with each other (two-sample chi-square)
    a, b = counts["device"], counts["torch"]
    assert (((a - b) ** 2) / (a + b)).sum() < 140


@pytest.mark.parametrize("name,size", [("cifar100_64", 64), ("cifar100_96", 96)])
def test_upsampled_cifar100_batches(fake_cifar100, name, size):
    cfg = cifar_cfg(fake_cifar100, name=name)
    validate(cfg)
    assert cfg.dataset.image_size == size and cfg.dataset.native_size == 32 and cfg.dataset.num_classes == 100
    dm = build_datamodule(cfg)
    dm.setup()
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (16, 3, size, size) and yb.max() < 100
    # evaluation batches are the 32 px images, normalised, then resized bilinearly
    xt, _ = next(iter(dm.test_dataloader()))
    raw = torch.from_numpy(dm.arrays["test"][0][:16]).permute(0, 3, 1, 2).float()
    mean = torch.tensor(list(cfg.dataset.mean)).view(1, 3, 1, 1)
    std = torch.tensor(list(cfg.dataset.std)).view(1, 3, 1, 1)
    expected = F.interpolate((raw / 255 - mean) / std, size=(size, size), mode="bilinear", align_corners=False)
    assert torch.allclose(xt, expected, atol=1e-4)
    # the torchvision path resizes too (PIL bilinear)
    dm_t = build_datamodule(cifar_cfg(fake_cifar100, "dataset.loader=torch", name=name))
    assert next(iter(dm_t.train_dataloader()))[0].shape == (16, 3, size, size)


def test_image_size_override_on_cifar100_and_bad_sizes(fake_cifar100):
    dm = build_datamodule(cifar_cfg(fake_cifar100, "dataset.image_size=64", name="cifar100"))
    dm.setup()
    assert next(iter(dm.test_dataloader()))[0].shape[-1] == 64
    for bad in (48, 100):
        with pytest.raises(ConfigError) as err:
            validate(cifar_cfg(fake_cifar100, f"dataset.image_size={bad}", name="cifar100"))
        assert err.value.key == "dataset.image_size" and "multiple of 32" in str(err.value)
    for override, key in (("dataset.loader=dali", "dataset.loader"), ("dataset.placement=disk", "dataset.placement")):
        with pytest.raises(ConfigError) as err:
            validate(cifar_cfg(fake_cifar100, override))
        assert err.value.key == key


@pytest.mark.parametrize("target", ["cpu:0", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_host_resident_split_gives_the_same_batches(target, monkeypatch):
    """A split kept in host memory (gathered per batch, then copied to the device) batches exactly like a
    device-resident one. Without a GPU the target is ``cpu:0``: torch compares it unequal to the
    images' ``cpu``, so the host-gather branch runs (and is seen to run: every batch goes through
    ``.to(target)``)."""
    x = torch.randint(0, 256, (40, 8, 8, 3), dtype=torch.uint8)
    y = torch.arange(40)
    kw = dict(shuffle=True, augment=True, seed=3, pad=2, size=16)
    resident = list(TensorBatches(x.to(target), y, 16, MEAN, STD, **kw))
    host = TensorBatches(x.clone(), y, 16, MEAN, STD, device=target, **kw)
    assert host.images.device != host.device  # images in host memory, batches for the device
    copied = []
    real_to = torch.Tensor.to

    def spy(t, *args, **kwargs):
        if t.dtype == torch.uint8 and t.dim() == 4:
            copied.append(len(t))
        return real_to(t, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    batches = list(host)
    monkeypatch.undo()
    assert copied == [16, 16, 8]  # the host-gather branch ran for every batch, and only the batch was copied
    assert all(torch.equal(p[0].cpu(), q[0].cpu()) and torch.equal(p[1].cpu(), q[1].cpu())
               for p, q in zip(resident, batches, strict=True))
    assert batches[0][0].shape == (16, 3, 16, 16) and len(batches) == 3


def test_channels_last_batches():
    x = torch.randint(0, 256, (8, 8, 8, 3), dtype=torch.uint8)
    xb, _ = next(iter(TensorBatches(x, torch.arange(8), 8, MEAN, STD, channels_last=True)))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    ref, _ = next(iter(TensorBatches(x, torch.arange(8), 8, MEAN, STD)))
    assert ref.is_contiguous() and torch.equal(xb, ref)
