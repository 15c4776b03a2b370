"""Detection data sets (``dataset.kind=detect``): Pascal VOC, and CIFAR-10 objects pasted on canvases.

Every sample is a uint8 image resized to ``image_size`` x ``image_size`` and a float target
``(m, 6)``: ``label, x0, y0, x1, y1, difficult`` per object, boxes in continuous pixel coordinates
of the resized image (see :mod:`spatialprobe.tasks.voc_eval`). A batch is ``(images, targets, index)``:
uint8 images normalised on the device (as for ImageNet), targets padded to the batch's largest
object count with label -1, and each image's index in its split (Fig. 8 shows the first 11).

* ``dataset=voc`` (S0 section 4.5): ``<root>/VOCdevkit/VOC2007`` and ``VOC2012``, each with
  ``JPEGImages/``, ``Annotations/`` and ``ImageSets/Main/<set>.txt``; ``train_sets`` (default
  2007 trainval + 2012 trainval, 16,551 images) for training, ``test_set`` (2007 test, 4,952
  images) for testing. File lists come from torchvision's ``VOCDetection``, annotations are read
  with its parser (``VOCDetection.parse_voc_xml``); a box ``[xmin, xmax]`` of the devkit's 1-based
  inclusive pixels becomes ``(xmin - 1, xmax)``. ``difficult`` objects are kept in the targets:
  evaluation ignores detections on them (VOC's protocol), the YOLO loss leaves them out (as
  YOLO's own VOC labels do). Images are decoded per epoch by ``num_workers`` worker processes.
* ``dataset=cifar10_detect``: a detection set built from real CIFAR-10 (any root the project
  reads), of all its classes or of the ``classes`` named (relabelled in that order): ``objects`` CIFAR images per canvas (min..max), each resized to a random size in
  ``object_size`` (px, with an aspect ratio between 3:4 and 4:3) and pasted at a random position
  on a smooth random background, no object covering more than ``max_overlap`` of another's box.
  Training canvases use CIFAR's training images, test canvases its test images. The canvases are
  a pure function of (source images, the keys above, ``build_seed``), built once (seconds) and
  cached as uint8 arrays under ``paths.cache_dir``.

Training augmentation (``augment``): horizontal flip; ``jitter`` > 0 adds YOLO's random scaling
and translation (up to ``jitter`` of the image size); ``color`` > 0 YOLO's exposure / saturation
change by up to a factor ``1 + color`` (torchvision transforms v2, boxes transformed with the
image; boxes that leave the image are dropped).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import ParseError
from xml.etree.ElementTree import parse as parse_xml

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from spatialprobe.config.schema import VOC_CLASSES, voc_set
from spatialprobe.data.imagefolder import FileSetsDataModule
from spatialprobe.errors import ConfigError, DataError
from spatialprobe.run.files import atomic_file

log = logging.getLogger("spatialprobe")

VOC_HINT = ("Pascal VOC must be laid out as <root>/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main} "
            "(and VOC2012 likewise), as the official tar files unpack")
CANVAS_VERSION = 1


# --------------------------------------------------------------------------- Pascal VOC
def _voc_objects(ann: Path, node: dict) -> np.ndarray:
    """The ``(m, 6)`` target of one parsed annotation, in the devkit's pixel frame shifted to continuous."""
    objects = node.get("object", [])
    objects = objects if isinstance(objects, list) else [objects]
    rows = []
    for k, obj in enumerate(objects):
        name = str(obj.get("name", "")).strip() if isinstance(obj, dict) else ""
        if name not in VOC_CLASSES:
            raise DataError(f"{ann}: object {k} has class {name!r}, not one of VOC's 20 classes "
                            f"(valid: {', '.join(VOC_CLASSES)})")
        box = obj.get("bndbox")
        try:
            x0, y0, x1, y1 = (float(box[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{ann}: object {k} ({name}) has no valid bndbox (numeric xmin, ymin, xmax, ymax)") from None
        if not (x1 >= x0 and y1 >= y0):
            raise DataError(f"{ann}: object {k} ({name}) has an empty bndbox ({x0}, {y0}, {x1}, {y1})")
        difficult = str(obj.get("difficult", "0")).strip() == "1"
        rows.append([VOC_CLASSES.index(name), x0 - 1.0, y0 - 1.0, x1, y1, float(difficult)])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 6)


def read_voc(root: Path, year: str, image_set: str) -> tuple[list[str], list[np.ndarray]]:
    """Image paths and targets of one VOC image set, every file checked (one clear line per problem)."""
    from torchvision.datasets import VOCDetection

    base = Path(root) / "VOCdevkit" / f"VOC{year}"
    if not base.is_dir():
        found = ", ".join(sorted(p.name for p in Path(root).iterdir())[:8]) if Path(root).is_dir() else "nothing"
        raise DataError(f"{base}: no such directory; {VOC_HINT}; found in {root}: {found or 'nothing'}")
    for sub in ("Annotations", "JPEGImages"):
        if not (base / sub).is_dir():
            raise DataError(f"{base / sub}: no such directory; {VOC_HINT}")
    listing = base / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: missing image-set file; {VOC_HINT}")
    voc = VOCDetection(str(root), year=year, image_set=image_set, download=False)
    targets = []
    for img, ann in zip(voc.images, voc.annotations, strict=True):
        if not Path(ann).is_file():
            raise DataError(f"{ann}: missing annotation file (listed in {listing})")
        if not Path(img).is_file():
            raise DataError(f"{img}: missing image (listed in {listing})")
        try:
            node = VOCDetection.parse_voc_xml(parse_xml(ann).getroot())
        except ParseError as err:
            raise DataError(f"{ann}: malformed XML ({err})") from None
        if "annotation" not in node:
            raise DataError(f"{ann}: not a VOC annotation (its root element is not <annotation>)")
        targets.append(_voc_objects(Path(ann), node["annotation"]))
    if not targets:
        raise DataError(f"{listing}: lists no images")
    return list(voc.images), targets


def load_voc(ds: DictConfig) -> dict[str, tuple[Callable[[int], Image.Image], list[np.ndarray]]]:
    root = Path(str(ds.root)).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; {VOC_HINT}")
    images, targets = [], []
    for value in ds.train_sets:
        i, t = read_voc(root, *voc_set("dataset.train_sets", value))
        images += i
        targets += t
    test_images, test_targets = read_voc(root, *voc_set("dataset.test_set", ds.test_set))
    return {"train": (_FileReader(images), targets), "test": (_FileReader(test_images), test_targets)}


class _FileReader:
    """Image i of a list of files, as RGB (a picklable callable, for DataLoader workers)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, i: int) -> Image.Image:
        try:
            with Image.open(self.paths[i]) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{self.paths[i]}: not a readable image ({err})") from None


class _ArrayReader:
    """Image i of a uint8 (N, H, W, 3) array."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __call__(self, i: int) -> np.ndarray:
        return np.asarray(self.images[i])


# --------------------------------------------------------------------------- CIFAR objects on canvases
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field (a 4x4 grid of colours, bilinearly enlarged) with a little noise."""
    coarse = Image.fromarray(rng.integers(40, 216, (4, 4, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.int16)
    return np.clip(field + rng.integers(-12, 13, field.shape), 0, 255).astype(np.uint8)


def _covered(a: np.ndarray, b: np.ndarray) -> float:
    """The largest fraction of either box's area the two boxes share."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return w * h / min(area(a), area(b))


def make_canvases(images: np.ndarray, labels: np.ndarray, count: int, size: int, objects: tuple[int, int],
                  object_size: tuple[int, int], max_overlap: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` canvases (uint8 (count, size, size, 3)) and their targets ((count, max objects, 6), label -1 pads).

    A pure function of its arguments (module docstring). An object that finds no place after 50 tries is
    left out, so a canvas may hold fewer than ``objects[0]`` objects when the canvas is crowded.
    """
    rng = np.random.default_rng(seed)
    canvases = np.empty((count, size, size, 3), dtype=np.uint8)
    targets = np.full((count, objects[1], 6), -1.0, dtype=np.float32)
    for n in range(count):
        canvas = _background(rng, size)
        placed: list[np.ndarray] = []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            src = int(rng.integers(len(images)))
            for _try in range(50):
                side = rng.uniform(object_size[0], object_size[1])
                aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
                w = int(np.clip(round(side * math.sqrt(aspect)), 2, size))
                h = int(np.clip(round(side / math.sqrt(aspect)), 2, size))
                x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                box = np.array([x0, y0, x0 + w, y0 + h], dtype=np.float32)
                if all(_covered(box, p[1:5]) <= max_overlap for p in placed):
                    break
            else:
                continue
            canvas[y0:y0 + h, x0:x0 + w] = np.asarray(Image.fromarray(images[src]).resize((w, h), Image.BILINEAR))
            placed.append(np.array([labels[src], *box, 0.0], dtype=np.float32))
        canvases[n] = canvas
        if placed:
            targets[n, :len(placed)] = np.stack(placed)
    return canvases, targets


def _canvas_cache(ds: DictConfig, splits, cache_dir) -> Path | None:
    if not cache_dir:
        return None
    h = hashlib.sha1()
    for split in ("train", "test"):
        h.update(np.ascontiguousarray(splits.x[split]).data)
        h.update(np.ascontiguousarray(splits.y[split]).data)
    keys = {k: OmegaConf.select(ds, k) for k in ("image_size", "objects", "object_size", "max_overlap", "train_canvases",
                                               "test_canvases", "build_seed", "classes")}
    h.update(repr((sorted((k, str(v)) for k, v in keys.items()), CANVAS_VERSION)).encode())
    return Path(str(cache_dir)).expanduser() / f"{ds.name}-{ds.image_size}px-{h.hexdigest()[:12]}.npz"


def load_canvases(ds: DictConfig, cache_dir) -> tuple[dict, list[str]]:
    """The cifar10_detect splits: built from the source images once, then read from the cache."""
    from spatialprobe.data import load_splits

    src = OmegaConf.create(OmegaConf.to_container(ds, resolve=True))
    src.name, src.num_classes, src.image_size, src.native_size = ds.source, ds.source_classes, ds.source_size, None
    splits = load_splits(src, cache_dir)
    if ds.get("classes") is not None:
        splits = _keep_classes(splits, list(ds.classes))
    cache = _canvas_cache(ds, splits, cache_dir)
    arrays = None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception:  # a broken cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)
    if arrays is None:
        arrays = {}
        for stream, (split, count) in enumerate((("train", ds.train_canvases), ("test", ds.test_canvases))):
            x, t = make_canvases(splits.x[split], splits.y[split], int(count), int(ds.image_size), tuple(ds.objects),
                                 tuple(ds.object_size), float(ds.max_overlap), int(ds.build_seed) * 2 + stream)
            arrays[f"x_{split}"], arrays[f"t_{split}"] = x, t
        if cache is not None:
            _write_npz(cache, arrays)
    out = {}
    for split in ("train", "test"):
        t = arrays[f"t_{split}"]
        out[split] = (_ArrayReader(arrays[f"x_{split}"]), [row[row[:, 0] >= 0] for row in t])
    return out, list(splits.classes)


def _keep_classes(splits, names: list[str]):
    """Only the images of the classes ``names``, relabelled 0..len(names)-1 in that order."""
    from spatialprobe.data.sources import Splits

    unknown = [n for n in names if n not in splits.classes]
    if unknown:
        raise ConfigError("dataset.classes", names, f"{', '.join(unknown)} not among the source's classes",
                          splits.classes)
    old = np.array([splits.classes.index(n) for n in names])
    remap = np.full(len(splits.classes), -1)
    remap[old] = np.arange(len(names))
    keep = {s: np.isin(splits.y[s], old) for s in splits.x}
    return Splits({s: splits.x[s][keep[s]] for s in splits.x}, {s: remap[splits.y[s][keep[s]]] for s in splits.y},
                  list(names), origin=splits.origin)


def _write_npz(path: Path, arrays: dict) -> None:
    try:
        with atomic_file(path, "wb", sync=False) as fh:
            np.savez(fh, **arrays)
    except OSError:
        pass  # the cache is an optimisation: an unwritable cache dir must not stop a run


# --------------------------------------------------------------------------- samples and batches
def transforms(train: bool, ds: DictConfig):
    """torchvision v2 pipeline of (image, {"boxes", "labels", "difficult"}) -> image_size, augmented for training."""
    from torchvision.transforms import v2

    size = int(ds.image_size)
    steps = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
    if train and ds.augment:
        steps.append(v2.RandomHorizontalFlip())
        if ds.jitter:
            j = float(ds.jitter)
            steps.append(v2.RandomAffine(degrees=0, translate=(j, j), scale=(1 - j, 1 + j)))
        if ds.color:
            steps.append(v2.ColorJitter(brightness=float(ds.color), saturation=float(ds.color)))
        steps += [v2.ClampBoundingBoxes(),
                  v2.SanitizeBoundingBoxes(min_size=1, labels_getter=lambda s: (s[1]["labels"], s[1]["difficult"]))]
    return v2.Compose(steps)


class DetectionSet(Dataset):
    """Sample i: (uint8 CHW image at image_size, (m, 6) float target, i)."""

    def __init__(self, read: Callable[[int], object], targets: list[np.ndarray], transform, indices=None):
        self.read, self.targets, self.transform = read, targets, transform
        self.indices = list(range(len(targets))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        j = self.indices[i]
        image = self.read(j)
        if isinstance(image, np.ndarray):  # an explicit image: v2 would take the first plain tensor for one
            image = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
        h, w = (image.height, image.width) if isinstance(image, Image.Image) else tuple(image.shape[-2:])
        t = torch.from_numpy(self.targets[j])
        target = {"boxes": tv_tensors.BoundingBoxes(t[:, 1:5], format="XYXY", canvas_size=(h, w)),
                  "labels": t[:, 0].long(), "difficult": t[:, 5]}
        image, target = self.transform(image, target)
        out = torch.cat([target["labels"][:, None].float(), target["boxes"].as_subclass(torch.Tensor).float(),
                         target["difficult"][:, None].float()], 1)
        return image.as_subclass(torch.Tensor), out, i


def collate(batch):
    """Stack the images; pad the targets to the batch's largest object count with label -1."""
    images = torch.stack([b[0] for b in batch])
    m = max(1, max(len(b[1]) for b in batch))
    targets = torch.full((len(batch), m, 6), -1.0)
    for n, (_, t, _) in enumerate(batch):
        targets[n, :len(t)] = t
    return images, targets, torch.tensor([b[2] for b in batch])


class DetectionDataModule(FileSetsDataModule):
    """Train / val / test loaders of a detection set; ``val_size > 0`` holds out the last training images,
    otherwise the test split doubles as the validation split (the papers report test numbers)."""

    collate_fn = collate

    def __init__(self, ds: DictConfig, batch_size: int, seed: int, cache_dir=None, channels_last: bool = False):
        super().__init__(ds, batch_size, seed, channels_last)
        if ds.source == "voc":
            splits, self.classes = load_voc(ds), list(VOC_CLASSES)
        else:
            splits, self.classes = load_canvases(ds, cache_dir)
        (read, targets), (test_read, test_targets) = splits["train"], splits["test"]
        n, val_size = len(targets), int(ds.get("val_size") or 0)
        if val_size >= n:
            raise ConfigError("dataset.val_size", val_size, f"must be smaller than the {n} training images")
        eval_n = ds.get("eval_subset") or ds.get("subset")
        fit = range(n - val_size)[: ds.get("subset") or None]
        test = range(len(test_targets))[:eval_n]
        self.sets = {"train": DetectionSet(read, targets, transforms(True, ds), fit),
                     "test": DetectionSet(test_read, test_targets, transforms(False, ds), test)}
        self.sets["val"] = (DetectionSet(read, targets, transforms(False, ds), range(n - val_size, n)[:eval_n])
                            if val_size else self.sets["test"])


def build_datamodule(cfg: DictConfig) -> DetectionDataModule:
    return DetectionDataModule(cfg.dataset, int(cfg.recipe.batch_size), int(cfg.seed), cfg.paths.cache_dir,
                               channels_last=bool(OmegaConf.select(cfg, "model.channels_last", default=False)))
