"""Cityscapes-format data (P section 4.2): the splits, batches for ranking, and the training data module.

* The layout (``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png``) is read through torchvision's ``Cityscapes`` data set,
  label ids mapped to the 19 train ids (everything else 255 = unlabelled, ignored).
* :class:`CityscapesBatches` batches a split for ranking and switch-off (optionally resized, or only the
  images whose pedestrians lie in one half: P's val-left / val-right); :class:`CityscapesDataModule`
  feeds ``task=segment`` training with the transforms of torchvision's segmentation reference.
* :func:`colorize`: train ids as Cityscapes colours (P Fig. 5).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from spatialprobe.data.imagefolder import FileSetsDataModule
from spatialprobe.errors import DataError

IGNORE = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PEDESTRIANS = (11, 12)  # train ids of person and rider (P's val-left / val-right: "pedestrians")
SIDES = ("left", "right")


def train_id_table() -> np.ndarray:
    """Lookup table label id -> train id (255 for classes Cityscapes does not evaluate)."""
    from torchvision.datasets import Cityscapes

    lut = np.full(256, IGNORE, dtype=np.uint8)
    for c in Cityscapes.classes:
        if 0 <= c.id < 256 and 0 <= c.train_id < IGNORE:
            lut[c.id] = c.train_id
    return lut


def colorize(train_ids: torch.Tensor) -> np.ndarray:
    """(H, W) train ids -> (H, W, 3) uint8 in Cityscapes' colours (unlabelled: black)."""
    from torchvision.datasets import Cityscapes

    palette = np.zeros((256, 3), dtype=np.uint8)
    for c in Cityscapes.classes:
        if 0 <= c.train_id < IGNORE:
            palette[c.train_id] = c.color
    return palette[train_ids.cpu().numpy().astype(np.uint8)]


def pedestrian_side(target: torch.Tensor) -> str | None:
    """``left`` / ``right`` when every pedestrian pixel of the (H, W) train-id map is in that half of the width;
    ``both`` when they are on both sides; None without pedestrians."""
    cols = torch.isin(target, torch.tensor(PEDESTRIANS)).any(0).nonzero().flatten()
    if len(cols) == 0:
        return None
    half = target.shape[-1] / 2
    if cols.max() < half:
        return "left"
    return "right" if cols.min() >= half else "both"


def open_split(root: str | Path, split: str):
    from torchvision.datasets import Cityscapes

    root = Path(root).expanduser()
    try:
        data = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        raise DataError(
            f"{root}: no Cityscapes {split} split ({err}); expected leftImg8bit/{split}/<city>/*_leftImg8bit.png "
            f"and gtFine/{split}/<city>/*_gtFine_labelIds.png (download from https://www.cityscapes-dataset.com)"
        ) from None
    if len(data) == 0:
        raise DataError(f"{root}: the Cityscapes {split} split holds no images (leftImg8bit/{split}/<city>/)")
    return data


def read_item(data, lut: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ``i`` as uint8 (H, W, 3) and its train ids as uint8 (H, W)."""
    try:
        image, label = data[i]
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
        y = torch.from_numpy(np.asarray(label, dtype=np.uint8).copy())
    except OSError as err:
        raise DataError(f"{data.images[i]}: unreadable image or label ({err})") from None
    if x.shape[:2] != y.shape:
        raise DataError(f"{data.images[i]}: image {tuple(x.shape[:2])} and label {tuple(y.shape)} differ in size")
    return x, lut[y.long()]


def read_image_list(path: str | Path) -> dict[str, str | None]:
    """A user's image list: one Cityscapes image per line, its name (``frankfurt_000000_000294``, with or
    without ``_leftImg8bit.png`` or a folder) optionally followed by ``left`` or ``right``; ``#`` comments."""
    path = Path(path).expanduser()
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DataError(f"segmentation.image_list={str(path)!r}: unreadable ({err.strerror or err})") from None
    listed: dict[str, str | None] = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        side = words[1].lower() if len(words) > 1 else None
        if side not in (None, *SIDES) or len(words) > 2:
            raise DataError(f"{path}:{number}: expected '<image name> [left|right]', found {line.strip()!r}")
        listed[Path(words[0]).name.removesuffix(".png").removesuffix("_leftImg8bit")] = side
    if not listed:
        raise DataError(f"{path}: the image list names no image")
    return listed


class CityscapesBatches:
    """Batches ``(x, train-id target, None)`` of a Cityscapes-format split (see module docstring).

    ``side``: only the images whose pedestrian pixels all lie in that half (P's val-left / val-right),
    chosen from the labels, or from ``image_list`` (:func:`read_image_list`: the listed images, and, where a
    line names a side, only those of that side: the authors' released list of val-left / val-right images);
    ``limit``: at most that many images (after the selection).
    """

    def __init__(self, root: str | Path, split: str = "val", batch_size: int = 2, size: Sequence[int] | None = None,
                 limit: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD, side: str | None = None,
                 image_list: str | Path | None = None):
        self.data = open_split(root, split)
        self.lut = torch.from_numpy(train_id_table())
        self.indices = list(range(len(self.data)))
        if side is not None and image_list is not None:
            listed = read_image_list(image_list)
            names = {Path(p).name.removesuffix("_leftImg8bit.png"): i for i, p in enumerate(self.data.images)}
            missing = sorted(n for n in listed if n not in names)
            if missing:
                raise DataError(f"{image_list}: {len(missing)} listed image(s) are not in the {split} split of {root}, "
                                f"e.g. {missing[0]}")
            sided = any(v is not None for v in listed.values())
            self.indices = sorted(names[n] for n, s in listed.items() if (s == side if sided else True))
            if not sided:  # a plain list: its images, split into the halves by their labels
                self.indices = [i for i in self.indices
                                if pedestrian_side(read_item(self.data, self.lut, i)[1]) == side]
        elif side is not None:
            self.indices = [i for i in self.indices if pedestrian_side(read_item(self.data, self.lut, i)[1]) == side]
        if side is not None and not self.indices:
            raise DataError(f"{root}: no {split} image has its pedestrians (person, rider) only in the {side} "
                            f"half, so there is no val-{side} subset to rank on")
        if limit is not None:
            self.indices = self.indices[:int(limit)]
        self.count = len(self.indices)
        self.batch_size, self.size = int(batch_size), tuple(size) if size else None
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, None]]:
        for start in range(0, self.count, self.batch_size):
            items = [read_item(self.data, self.lut, i) for i in self.indices[start:start + self.batch_size]]
            x = torch.stack([i[0] for i in items]).permute(0, 3, 1, 2).float() / 255.0
            y = torch.stack([i[1] for i in items]).long()
            if self.size is not None:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
                y = F.interpolate(y[:, None].float(), size=self.size, mode="nearest")[:, 0].long()
            yield (x - self.mean) / self.std, y, None


# --------------------------------------------------------------------------- training data (task=segment)
class CityscapesSegmentation(torch.utils.data.Dataset):
    """(uint8 (3, H, W) image, int64 (H, W) train ids) of a split, through joint torchvision v2 transforms."""

    def __init__(self, root, split: str, transform, limit: int | None = None):
        self.data, self.transform = open_split(root, split), transform
        self.lut = torch.from_numpy(train_id_table())
        self.count = len(self.data) if limit is None else min(int(limit), len(self.data))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        x, y = read_item(self.data, self.lut, i)
        x, y = self.transform(tv_tensors.Image(x.permute(2, 0, 1)), tv_tensors.Mask(y[None]))
        return x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor)[0].long()


def transforms(train: bool, ds: DictConfig):
    """torchvision's segmentation reference: random resize of the short side to 0.5..2.0 x ``base_size``, flip,
    random ``crop_size`` crop (padded with black / unlabelled) for training; resize to ``base_size`` otherwise."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    base = int(ds.base_size)
    if not train:
        return v2.Compose([v2.Resize(base, antialias=True)])
    lo, hi = (int(s * base) for s in ds.scale_range)
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}
    return v2.Compose([v2.RandomResize(lo, hi, antialias=True), v2.RandomHorizontalFlip(),
                       v2.RandomCrop(int(ds.crop_size), pad_if_needed=True, fill=fill)])


class CityscapesDataModule(FileSetsDataModule):
    """train / val / test loaders for ``task=segment``; test = val (Cityscapes' test labels are not public).
    The loaders, DDP shards and on-device normalisation are those of every file-set data module."""

    def __init__(self, ds: DictConfig, batch_size: int, seed: int, channels_last: bool = False):
        super().__init__(ds, batch_size, seed, channels_last)
        eval_n = ds.get("eval_subset") or ds.get("subset")
        self.sets = {"train": CityscapesSegmentation(ds.root, "train", transforms(True, ds), ds.get("subset")),
                     "val": CityscapesSegmentation(ds.root, "val", transforms(False, ds), eval_n)}
        self.sets["test"] = self.sets["val"]
