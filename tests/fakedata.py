"""Tiny fake data sets in the real on-disk formats (used by the tests, never by the package)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def _images(rng: np.random.Generator, n: int, size: int, labels: np.ndarray) -> np.ndarray:
    """Images a network can tell apart: the class sets the mean colour of a noisy square."""
    base = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.int64) // 4
    tint = (labels[:, None] * 37 + np.arange(3)[None, :] * 61) % 192
    return np.clip(base + tint[:, None, None, :], 0, 255).astype(np.uint8)


def make_cifar_batches(root: Path, name: str = "cifar10", per_batch: int = 20, test: int = 40,
                       seed: int = 0) -> Path:
    """torchvision's CIFAR python-batch layout with tiny batches (md5s will not match the originals)."""
    rng = np.random.default_rng(seed)
    num_classes = 10 if name == "cifar10" else 100
    folder = Path(root) / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
    for fname in files:
        n = test if "test" in fname else per_batch * (5 if name == "cifar100" else 1)
        labels = rng.integers(0, num_classes, size=n)
        imgs = _images(rng, n, 32, labels).transpose(0, 3, 1, 2).reshape(n, 3072)
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": imgs, label_key: labels.tolist(), "batch_label": fname}, fh)
    meta_name, key = ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    with open(folder / meta_name, "wb") as fh:
        pickle.dump({key: [f"class{i}" for i in range(num_classes)]}, fh)
    return Path(root)


def make_class_folders(root: Path, num_classes: int = 10, train: int = 8, test: int = 4, size: int = 32,
                       seed: int = 0, archive: bool = False, split_names=("train", "test")) -> Path:
    """``root/<split>/<class>/<i>.png`` (or a .tar.gz of it when ``archive``)."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, per_class in zip(split_names, (train, test), strict=True):
        for c in range(num_classes):
            imgs = _images(rng, per_class, size, np.full(per_class, c))
            for i, img in enumerate(imgs):
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                files[f"{split}/c{c:02d}/{i:04d}.png"] = buf.getvalue()
    root = Path(root)
    if archive:
        root.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root, "w:gz") as tar:
            for name, blob in files.items():
                info = tarfile.TarInfo(f"fake/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        for name, blob in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(blob)
    return root


# Cityscapes label ids -> train ids used by the fake fixture (road, sidewalk, person, car, unlabeled, ego vehicle)
CITYSCAPES_IDS = {7: 0, 8: 1, 24: 11, 26: 13, 0: 255, 1: 255}


def make_cityscapes(root: Path, splits=("train", "val"), per_split: int = 2, size=(32, 64), seed: int = 0,
                    pedestrians=None) -> Path:
    """The Cityscapes layout: leftImg8bit/<split>/<city>/<name>_leftImg8bit.png + gtFine/.../<name>_gtFine_labelIds.png.

    ``pedestrians``: per image, where its person pixels (label id 24) are: "left" / "right" / "both" (a block in
    that half / both halves) or None (no person); by default every label is drawn at random (persons everywhere).
    """
    rng = np.random.default_rng(seed)
    ids = np.array(sorted(CITYSCAPES_IDS), dtype=np.uint8)
    background = np.array(sorted(i for i in CITYSCAPES_IDS if i != 24), dtype=np.uint8)
    h, w = size
    for split in splits:
        for i in range(per_split):
            city = "fakecity"
            name = f"{city}_{i:06d}_000019"
            img_dir = Path(root) / "leftImg8bit" / split / city
            gt_dir = Path(root) / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            if pedestrians is None:
                labels = ids[rng.integers(0, len(ids), size=size)]
            else:
                labels = background[rng.integers(0, len(background), size=size)]
                side = pedestrians[i % len(pedestrians)]
                if side in ("left", "both"):
                    labels[h // 4:h // 2, w // 8:w // 4] = 24
                if side in ("right", "both"):
                    labels[h // 4:h // 2, w - w // 4:w - w // 8] = 24
            image = np.clip(labels[..., None] * 9 + rng.integers(0, 30, size=(*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(img_dir / f"{name}_leftImg8bit.png")
            Image.fromarray(labels).save(gt_dir / f"{name}_gtFine_labelIds.png")
    return Path(root)
