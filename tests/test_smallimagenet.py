"""Small-ImageNet 32/64: the release's batch files (npz and pickle), checks, the memory-mapped cache."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fakeimagenet import make_small_imagenet, small_imagenet_batch, write_batch
from spatialprobe.data import load_splits, smallimagenet
from spatialprobe.data.datamodule import ArrayDataModule, place
from spatialprobe.errors import DataError


def ds_cfg(root, size=32, **kw):
    base = dict(name=f"imagenet{size}", num_classes=1000, image_size=size, native_size=size, root=str(root),
                format="auto", augment=True, subset=None, eval_subset=None, val_size=0, loader="device",
                placement="auto", num_workers=0, mean=[0.48, 0.46, 0.41], std=[0.26, 0.25, 0.27])
    return OmegaConf.create(base | kw)


def raw(path):
    """What a batch file holds, read independently of the package."""
    if str(path).endswith(".npz"):
        with np.load(path) as z:
            return z["data"], z["labels"]
    with open(path, "rb") as fh:
        d = pickle.load(fh)
    return d["data"], np.asarray(d["labels"])


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("fmt,layout", [("npz", "release"), ("pickle", "flat")])
def test_batches_load_with_labels_shifted_and_hwc_exact(tmp_path, size, fmt, layout):
    root = make_small_imagenet(tmp_path / "d", size, per_batch=5, val=7, fmt=fmt, layout=layout)
    s = load_splits(ds_cfg(root, size), tmp_path / "cache")
    assert s.x["train"].shape == (50, size, size, 3) and s.x["test"].shape == (7, size, size, 3)
    assert s.x["train"].dtype == np.uint8 and s.num_classes == 1000
    # batch order 1..10, rows in file order; channel-major rows -> HWC exactly; labels 1..1000 -> 0..999
    for i, split, offset in ((3, "train", 2 * 5), (None, "test", 0)):
        name = f"train_data_batch_{i}" if i else "val_data"
        data, labels = raw(smallimagenet.locate(root, name))
        n = len(labels)
        assert np.array_equal(s.y[split][offset : offset + n], labels - 1)
        expected = data.reshape(n, 3, size, size).transpose(0, 2, 3, 1)
        assert np.array_equal(s.x[split][offset : offset + n], expected)
    assert s.y["train"].min() >= 0 and s.y["train"].max() <= 999 and {0, 999} <= set(s.y["test"].tolist())


def test_npz_without_suffix_and_in_memory_without_cache(tmp_path):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=3, val=4, layout="flat")
    for f in root.glob("*.npz"):
        f.rename(f.with_suffix(""))
    s = load_splits(ds_cfg(root), None)
    assert s.x["train"].shape == (30, 32, 32, 3) and not isinstance(s.x["train"], np.memmap)


def test_missing_batch_files_are_named(tmp_path):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=2, val=2)
    next(root.rglob("train_data_batch_7.npz")).unlink()
    next(root.rglob("val_data.npz")).unlink()
    with pytest.raises(DataError) as err:
        load_splits(ds_cfg(root, format="smallimagenet"), tmp_path / "cache")
    msg = str(err.value)
    assert "missing Small-ImageNet batch files: train_data_batch_7, val_data" in msg
    assert "train_data_batch_1," not in msg and "image-net.org" in msg and str(root) in msg


def test_wrong_shape_names_file_and_size(tmp_path):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=2, val=2, layout="flat")
    write_batch(root / "train_data_batch_4", small_imagenet_batch(3, 64, seed=1), "npz")  # 64 px rows in a 32 px set
    with pytest.raises(DataError, match=r"train_data_batch_4.npz: 'data' has shape \(3, 12288\), expected "
                                        r"\(N, 3072\) .*rows of 12288 are 64 px images"):
        load_splits(ds_cfg(root), tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*/*.npy"))  # no half-written cache is left behind


@pytest.mark.parametrize("labels,span", [([0, 5, 7], "0..7"), ([1, 1001, 3], "1..1001")])
def test_label_range_names_file(tmp_path, labels, span):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=3, val=3, layout="flat")
    batch = small_imagenet_batch(3, 32, seed=2) | {"labels": labels}
    write_batch(root / "val_data", batch, "npz")
    with pytest.raises(DataError, match=rf"val_data.npz: labels span {span}, expected 1..1000"):
        load_splits(ds_cfg(root), None)


def test_other_bad_files(tmp_path):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=3, val=3, fmt="pickle", layout="flat")
    (root / "train_data_batch_2").write_bytes((root / "train_data_batch_2").read_bytes()[:50])
    with pytest.raises(DataError, match=r"train_data_batch_2: unreadable Small-ImageNet batch"):
        load_splits(ds_cfg(root), None)
    write_batch(root / "train_data_batch_2", {"data": np.zeros((3, 3072), np.float32), "labels": [1, 2, 3]}, "pickle")
    with pytest.raises(DataError, match=r"train_data_batch_2: 'data' has dtype float32, expected uint8"):
        load_splits(ds_cfg(root), None)
    write_batch(root / "train_data_batch_2", {"images": np.zeros((3, 3072), np.uint8)}, "pickle")
    with pytest.raises(DataError, match=r"train_data_batch_2: no key 'data' or 'labels' \(found: images\)"):
        load_splits(ds_cfg(root), None)


def test_cache_is_memory_mapped_and_never_decoded_again(tmp_path, monkeypatch):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=4, val=6)
    first = load_splits(ds_cfg(root), tmp_path / "cache")
    assert isinstance(first.x["train"], np.memmap) and len(list((tmp_path / "cache").glob("*/train_x.npy"))) == 1

    def no_decode(*a, **k):
        raise AssertionError("a batch file was read again although the cache exists")

    monkeypatch.setattr(smallimagenet, "read_batch", no_decode)
    second = load_splits(ds_cfg(root), tmp_path / "cache")
    assert isinstance(second.x["train"], np.memmap)
    assert np.array_equal(first.x["train"], second.x["train"]) and np.array_equal(first.y["test"], second.y["test"])
    # subset + held-out validation on the memory map, two epochs through the device loader: nothing re-read
    dm = ArrayDataModule(second, ds_cfg(root, subset=24, val_size=8), 8, seed=0)
    assert dm.sizes() == {"train": 24, "val": 8, "test": 6}
    dm.setup()
    epochs = []
    for epoch in (0, 1):
        loader = dm.train_dataloader()
        loader.epoch_fn = lambda e=epoch: e
        epochs.append(torch.cat([y for _, y in loader]))
    assert sorted(epochs[0].tolist()) == sorted(torch.from_numpy(second.y["train"][:24]).tolist())
    assert not torch.equal(epochs[0], epochs[1])
    xb, _ = next(iter(dm.val_dataloader()))
    assert xb.shape == (8, 3, 32, 32)


def test_changed_files_rebuild_the_cache(tmp_path):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=2, val=2, layout="flat")
    load_splits(ds_cfg(root), tmp_path / "cache")
    write_batch(root / "val_data", small_imagenet_batch(5, 32, seed=9), "npz")
    s = load_splits(ds_cfg(root), tmp_path / "cache")
    assert len(s.y["test"]) == 5 and len(list((tmp_path / "cache").iterdir())) == 2


def test_placement_of_a_memory_mapped_split(tmp_path):
    root = make_small_imagenet(tmp_path / "d", 32, per_batch=2, val=2, layout="flat")
    x = load_splits(ds_cfg(root), tmp_path / "cache").x["train"]
    cpu = torch.device("cpu")
    for placement in ("auto", "host"):  # on the CPU the memory map is used in place, not copied
        t = place(x, cpu, placement)
        assert t.data_ptr() == x.ctypes.data and torch.equal(t, torch.from_numpy(np.asarray(x)))
    copied = place(x, cpu, "device")
    assert copied.data_ptr() != x.ctypes.data and torch.equal(copied, torch.from_numpy(np.asarray(x)))


def test_placement_auto_on_a_gpu_takes_at_most_half_of_its_free_memory(monkeypatch):
    """docs/data.md: ``auto`` puts a split on the GPU when it takes at most half of the free GPU memory, else
    leaves it in host memory; ``device`` / ``host`` force one or the other. The GPU is faked: its free memory
    (torch.cuda.mem_get_info) and the copy to it (Tensor.to) are stubs; the images are 1,000 bytes."""
    x = np.zeros((10, 10, 10), dtype=np.uint8)
    gpu = torch.device("cuda", 0)
    free, moved = [0], []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0], 80 * 2**30))
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device, *a, **kw: moved.append(device) or self)

    def where(placement: str, free_bytes: int) -> str:
        free[0], moved[:] = free_bytes, []
        place(x, gpu, placement)
        return "gpu" if moved == [gpu] else "host" if not moved else f"? {moved}"

    assert where("auto", 2000) == "gpu"      # 1,000 bytes = half of 2,000 free: fits
    assert where("auto", 1999) == "host"     # more than half of 1,999
    assert where("auto", 10**12) == "gpu"
    assert where("device", 10) == "gpu" and where("host", 10**12) == "host"
