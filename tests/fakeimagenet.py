"""Tiny fake Small-ImageNet batch files and ImageNet class folders, in exactly the real formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from fakedata import _images


def small_imagenet_batch(n: int, size: int, seed: int) -> dict:
    """One batch as the release stores it: 'data' (n, 3*s*s) uint8 channel-major, 'labels' 1..1000 (a list)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, 1001, size=n)
    labels[:2] = (1, 1000)  # both ends of the range
    images = _images(rng, n, size, labels - 1)  # (n, s, s, 3)
    return {"data": images.transpose(0, 3, 1, 2).reshape(n, 3 * size * size), "labels": labels.tolist()}


def write_batch(path: Path, batch: dict, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        np.savez(path, data=batch["data"], labels=np.asarray(batch["labels"]))
        written = path.with_name(path.name + ".npz") if path.suffix != ".npz" else path
        return written
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)
    return path


def make_small_imagenet(root: Path, size: int = 32, per_batch: int = 6, val: int = 10, fmt: str = "npz",
                        layout: str = "release") -> Path:
    """train_data_batch_1..10 and val_data.

    ``fmt``: npz (``<name>.npz``) or pickle (``<name>``, no suffix). ``layout``: ``release`` puts
    them into Imagenet{s}_train[_npz]/ and Imagenet{s}_val[_npz]/ as the download unpacks,
    ``flat`` straight into ``root``.
    """
    root = Path(root)
    tag = "_npz" if fmt == "npz" else ""
    train_dir = root / f"Imagenet{size}_train{tag}" if layout == "release" else root
    val_dir = root / f"Imagenet{size}_val{tag}" if layout == "release" else root
    for i in range(1, 11):
        write_batch(train_dir / f"train_data_batch_{i}", small_imagenet_batch(per_batch, size, seed=i), fmt)
    write_batch(val_dir / "val_data", small_imagenet_batch(val, size, seed=0), fmt)
    return root


def make_jpeg_folders(root: Path, num_classes: int = 3, train: int = 4, val: int = 2, seed: int = 0) -> Path:
    """``root/{train,val}/n0000000<c>/<i>.JPEG``: small JPEGs of different, non-square sizes."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train), ("val", val)):
        for c in range(num_classes):
            folder = Path(root) / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = int(rng.integers(24, 80)), int(rng.integers(24, 80))
                img = _images(rng, 1, max(h, w), np.array([c]))[0, :h, :w]
                Image.fromarray(img).save(folder / f"{split}_{c}_{i}.JPEG", format="JPEG", quality=90)
    return Path(root)
