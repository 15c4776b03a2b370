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


VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def voc_xml(filename: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int], int]]) -> str:
    """A VOC annotation: objects are (class name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{diff}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, diff in objects)
    return (f"<annotation><folder>VOC</folder><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def make_voc(root: Path, sets=(("2007", "trainval", 6), ("2012", "trainval", 6), ("2007", "test", 4)),
             seed: int = 0) -> Path:
    """``root/VOCdevkit/VOC<year>/{JPEGImages,Annotations,ImageSets/Main}``: small JPEGs of 1-3 coloured
    rectangles (class = colour), with their boxes; every third object of the test set is difficult."""
    rng = np.random.default_rng(seed)
    for year, image_set, count in sets:
        base = Path(root) / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        ids = []
        for n in range(count):
            name = f"{year}_{image_set}_{n:04d}"
            w, h = int(rng.integers(60, 100)), int(rng.integers(50, 90))
            img = np.full((h, w, 3), 90, dtype=np.uint8)
            objects = []
            for k in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, 4))
                x0, y0 = int(rng.integers(1, w - 20)), int(rng.integers(1, h - 20))
                x1, y1 = int(rng.integers(x0 + 10, w + 1)), int(rng.integers(y0 + 10, h + 1))
                img[y0 - 1:y1, x0 - 1:x1] = ((c * 60) % 256, (255 - c * 50) % 256, (c * 110) % 256)
                objects.append((VOC_NAMES[c], (x0, y0, x1, y1), int(image_set == "test" and k == 2)))
            Image.fromarray(img).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
            (base / "Annotations" / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", (w, h), objects))
            ids.append(name)
        (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in ids))
    return Path(root)


class Payload:
    """What a crafted checkpoint carries: unpickling it runs ``touch <marker>`` (``os.system`` through
    ``__reduce__``), so a test sees whether a load ran foreign code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        import shlex

        return os.system, (f"touch {shlex.quote(self.marker)}",)


def crafted_checkpoint(path: Path, marker: Path, spatialprobe: bool = True) -> Path:
    """A torch file that looks like a spatialprobe training checkpoint (or, ``spatialprobe=False``, a plain
    state dict) and carries a :class:`Payload` creating ``marker`` when it is loaded with weights_only=False."""
    import torch

    obj: dict = {"state_dict": {"model.w": torch.zeros(2)}, "global_step": 3, "epoch": 0} if spatialprobe else \
        {"conv.weight": torch.zeros(2)}
    if spatialprobe:
        obj["spatialprobe_config"] = {"model": {"name": "resnet18"}}
    obj["hyper_parameters"] = Payload(marker)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path
