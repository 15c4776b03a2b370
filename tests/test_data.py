"""Data sources and the batched tensor loader."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CIFAR10_JPG, needs_shared_cifar
from fakedata import make_cifar_batches, make_class_folders
from spatialprobe.data import load_splits, sources
from spatialprobe.data.datamodule import ArrayDataModule
from spatialprobe.data.loader import TensorBatches
from spatialprobe.errors import DataError

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def ds_cfg(root, name="cifar10", **kw):
    base = dict(name=name, num_classes=10 if name == "cifar10" else 100, image_size=32, root=str(root),
                format="auto", download=False, verify=False, augment=True, subset=None, eval_subset=None,
                val_size=0, mean=MEAN, std=STD)
    return OmegaConf.create(base | kw)


def test_cifar_batches_load_in_torchvision_layout(fake_cifar10, fake_cifar100):
    s = load_splits(ds_cfg(fake_cifar10), None)
    assert s.x["train"].shape == (160, 32, 32, 3) and s.x["train"].dtype == np.uint8
    assert s.x["test"].shape == (64, 32, 32, 3)
    assert s.classes == [f"class{i}" for i in range(10)]
    # channel-major rows are turned into HWC images exactly
    with open(fake_cifar10 / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)["data"][0]
    assert np.array_equal(s.x["train"][0], raw.reshape(3, 32, 32).transpose(1, 2, 0))
    s100 = load_splits(ds_cfg(fake_cifar100, "cifar100"), None)
    assert s100.num_classes == 100 and len(s100.y["train"]) == 200


def test_checksums_catch_modified_batches(fake_cifar10):
    with pytest.raises(DataError, match=r"data_batch_1: checksum mismatch"):
        load_splits(ds_cfg(fake_cifar10, verify=True), None)


def test_checksums_accept_the_published_files_and_catch_one_changed_byte(tmp_path, monkeypatch):
    """dataset.verify=true against md5s as torchvision publishes them: here the md5s of this test's own batches
    (the real CIFAR-10 cannot be downloaded in the test), so correct files load and one changed byte fails."""
    import hashlib
    from types import SimpleNamespace

    from torchvision import datasets

    root = make_cifar_batches(tmp_path / "c", per_batch=8, test=8)
    folder = root / "cifar-10-batches-py"
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in folder.iterdir()}
    real = datasets.CIFAR10
    published = SimpleNamespace(base_folder=real.base_folder, url=real.url, filename=real.filename,
                                tgz_md5=real.tgz_md5, train_list=[[n, md5[n]] for n, _ in real.train_list],
                                test_list=[[n, md5[n]] for n, _ in real.test_list],
                                meta={**real.meta, "md5": md5[real.meta["filename"]]})
    monkeypatch.setattr(sources, "_cifar_meta", lambda name: published)
    splits = load_splits(ds_cfg(root, verify=True), None)
    assert len(splits.y["train"]) == 40 and len(splits.y["test"]) == 8
    batch = folder / "data_batch_2"
    data = bytearray(batch.read_bytes())
    data[-1] ^= 1
    batch.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"data_batch_2: checksum mismatch \(expected the published md5 {md5['data_batch_2']}\)"):
        load_splits(ds_cfg(root, verify=True), None)


def test_truncated_batch_is_named(tmp_path):
    root = make_cifar_batches(tmp_path / "c", per_batch=8, test=8)
    f = root / "cifar-10-batches-py" / "data_batch_3"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(DataError, match=r"data_batch_3: unreadable CIFAR batch"):
        load_splits(ds_cfg(root), None)


def test_missing_cifar_without_download_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=r"no cifar10 batches in .*cifar-10-batches-py.*dataset.download=true"):
        load_splits(ds_cfg(tmp_path / "nothing"), None)


@pytest.mark.parametrize("archive", [False, True])
def test_class_folders_directory_and_archive(tmp_path, archive):
    root = make_class_folders(tmp_path / ("set.tar.gz" if archive else "set"), train=6, test=3, archive=archive)
    s = load_splits(ds_cfg(root), tmp_path / "cache")
    assert s.x["train"].shape == (60, 32, 32, 3) and s.x["test"].shape == (30, 32, 32, 3)
    assert sorted(np.bincount(s.y["train"])) == [6] * 10
    assert s.classes == [f"c{i:02d}" for i in range(10)]
    # fixed shuffle: the first 20 images are not all of one class
    assert len(set(s.y["train"][:20].tolist())) > 3


def test_folder_decode_is_cached(tmp_path, monkeypatch):
    root = make_class_folders(tmp_path / "set.tar.gz", train=2, test=1, archive=True)
    first = load_splits(ds_cfg(root), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decode(*a, **k):
        raise AssertionError("decoded again although the cache exists")

    monkeypatch.setattr(sources, "_decode", no_decode)
    second = load_splits(ds_cfg(root), tmp_path / "cache")
    assert np.array_equal(first.x["train"], second.x["train"]) and np.array_equal(first.y["test"], second.y["test"])


def test_runs_side_by_side_decode_once(tmp_path, monkeypatch):
    import threading

    root = make_class_folders(tmp_path / "set.tar.gz", train=2, test=1, archive=True)
    decode, calls = sources._decode, []

    def counted(*a, **k):
        calls.append(1)
        return decode(*a, **k)

    monkeypatch.setattr(sources, "_decode", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_splits(ds_cfg(root), tmp_path / "cache")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(calls) == 10 * (2 + 1)  # each image decoded once: the others read the cache
    assert all(np.array_equal(r.x["train"], results[0].x["train"]) for r in results)


def test_archive_without_class_folders(tmp_path):
    path = tmp_path / "flat.tar.gz"
    src = tmp_path / "a.txt"
    src.write_text("hello")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="images/a.txt")
    with pytest.raises(DataError, match=r"no class folders found; expected train/<class>/<image>.*found: images"):
        load_splits(ds_cfg(path), None)


def test_truncated_archive_is_named(tmp_path):
    root = make_class_folders(tmp_path / "set.tar.gz", train=4, test=2, archive=True)
    root.write_bytes(root.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"set.tar.gz: archive is truncated or corrupt"):
        load_splits(ds_cfg(root), None)


def test_wrong_class_count_is_reported(tmp_path):
    root = make_class_folders(tmp_path / "set", num_classes=3, train=2, test=1)
    with pytest.raises(DataError, match=r"found 3 classes but dataset.num_classes=10"):
        load_splits(ds_cfg(root), None)


def augmented(x: torch.Tensor, pad: int, seed: int) -> torch.Tensor:
    """The training loader's crop and flip of a uint8 NHWC batch, back in pixel values, NHWC."""
    loader = TensorBatches(x, torch.arange(len(x)), len(x), (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255),
                           augment=True, pad=pad)
    return loader.transform(x, torch.Generator().manual_seed(seed)).round().to(torch.uint8).permute(0, 2, 3, 1)


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.randint(1, 256, (16, 8, 8, 3), dtype=torch.uint8)  # no zeros in the original
    out = augmented(x, pad=2, seed=0)
    padded = torch.nn.functional.pad(x, (0, 0, 2, 2, 2, 2))
    offsets = set()
    for i in range(16):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if any(torch.equal(padded[i, dy:dy + 8, dx:dx + 8], o) for o in (out[i], out[i].flip(1)))]
        assert hits, f"sample {i} is not a window of its padded image (or its mirror)"
        offsets.update(hits)
    assert len(offsets) > 3  # the crops moved, to more than one place


def test_flip_mirrors_whole_images():
    x = torch.randint(0, 256, (64, 4, 4, 3), dtype=torch.uint8)
    out = augmented(x, pad=0, seed=1)
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    mirrored = [torch.equal(out[i], x[i].flip(1)) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54


def test_loader_normalises_shuffles_by_seed_and_covers_an_epoch():
    x = torch.randint(0, 256, (50, 4, 4, 3), dtype=torch.uint8)
    y = torch.arange(50)
    mk = lambda seed, epoch: TensorBatches(x, y, 8, MEAN, STD, shuffle=True, seed=seed, epoch_fn=lambda: epoch)  # noqa: E731
    order = lambda loader: torch.cat([b[1] for b in loader])  # noqa: E731
    assert len(mk(0, 0)) == 7 and sorted(order(mk(0, 0)).tolist()) == list(range(50))
    assert torch.equal(order(mk(0, 0)), order(mk(0, 0)))
    assert not torch.equal(order(mk(0, 0)), order(mk(0, 1)))  # new order every epoch
    assert not torch.equal(order(mk(0, 0)), order(mk(1, 0)))
    xb, yb = next(iter(TensorBatches(x, y, 50, MEAN, STD)))
    expected = (x.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert xb.shape == (50, 3, 4, 4) and torch.allclose(xb, expected, atol=1e-5)


def test_loader_shards_disjointly_across_ranks():
    x = torch.zeros(40, 2, 2, 3, dtype=torch.uint8)
    y = torch.arange(40)
    seen = [torch.cat([b[1] for b in TensorBatches(x, y, 4, MEAN, STD, shuffle=True, rank=r, world_size=2)])
            for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 20 and not set(seen[0].tolist()) & set(seen[1].tolist())


def test_evaluation_shards_cover_every_image_once():
    """Evaluation under DDP: shares of 14, 13, 13 of 40 images (training: equal shares, the rest dropped)."""
    x = torch.zeros(40, 2, 2, 3, dtype=torch.uint8)
    y = torch.arange(40)
    shards = [TensorBatches(x, y, 4, MEAN, STD, rank=r, world_size=3) for r in range(3)]
    seen = [torch.cat([b[1] for b in loader]) for loader in shards]
    assert [len(s) for s in seen] == [14, 13, 13] and [len(loader) for loader in shards] == [4, 4, 4]
    assert sorted(torch.cat(seen).tolist()) == list(range(40))
    train = [TensorBatches(x, y, 4, MEAN, STD, shuffle=True, drop_last=True, rank=r, world_size=3) for r in range(3)]
    assert [len(loader) for loader in train] == [3, 3, 3]


def test_subset_val_split_and_augment_switch(fake_cifar10):
    s = load_splits(ds_cfg(fake_cifar10), None)
    dm = ArrayDataModule(s, ds_cfg(fake_cifar10, subset=50, val_size=30, augment=False), 10, seed=0)
    # val is held out of train; subset caps every split (test has 64 images)
    assert dm.sizes() == {"train": 50, "val": 30, "test": 50}
    assert np.array_equal(dm.arrays["val"][0], s.x["train"][-30:])
    dm.setup()
    train = dm.train_dataloader()
    assert train.augment is False and train.shuffle is True and train.drop_last is True
    # without augmentation an epoch is exactly the normalised training images, in some order
    total = sum(xb.double().sum(0) for xb, _ in train)
    originals = torch.from_numpy(dm.arrays["train"][0]).permute(0, 3, 1, 2).double() / 255
    expected = ((originals - 0.5) / 0.25).sum(0)
    assert torch.allclose(total, expected, atol=1e-3)


@pytest.mark.slow  # decodes the 60,000 real JPEGs: CI runs it with make test-slow
@needs_shared_cifar()
def test_real_cifar10_archive(tmp_path):
    s = load_splits(ds_cfg(CIFAR10_JPG), tmp_path / "cache")
    assert s.x["train"].shape == (50000, 32, 32, 3) and s.x["test"].shape == (10000, 32, 32, 3)
    assert np.bincount(s.y["test"]).tolist() == [1000] * 10
    assert s.classes[:3] == ["airplane", "automobile", "bird"]
