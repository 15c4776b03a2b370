"""Segmentation side of the position-channel study: DeepLabv3-ResNet-50 on Cityscapes-format data.

* :class:`CityscapesBatches`: the Cityscapes layout (``leftImg8bit/<split>/<city>/*_leftImg8bit.png``
  and ``gtFine/<split>/<city>/*_gtFine_labelIds.png``) read through torchvision's ``Cityscapes``
  data set, label ids mapped to the 19 train ids (everything else 255 = ignored), optionally
  resized, batched and normalised; each batch is ``(x, target, None)``.
* :func:`build_deeplab`: torchvision's ``deeplabv3_resnet50`` (no downloaded weights), loading
  a state dict the user provides.
* :class:`SegmentationProbe`: the latent is the globally pooled backbone map (2048 channels);
  switching a channel off zeroes it in the map the DeepLab head reads.
* :class:`RegionIoU`: mIoU (torchmetrics) overall and over the left / centre / right thirds of
  the image width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import DataError
from .position import REGIONS, mask_channels

IGNORE = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_id_table() -> np.ndarray:
    """Lookup table label id -> train id (255 for classes Cityscapes does not evaluate)."""
    from torchvision.datasets import Cityscapes

    lut = np.full(256, IGNORE, dtype=np.uint8)
    for c in Cityscapes.classes:
        if 0 <= c.id < 256 and 0 <= c.train_id < IGNORE:
            lut[c.id] = c.train_id
    return lut


class CityscapesBatches:
    """Batches ``(x, train-id target, None)`` of a Cityscapes-format split (see module docstring)."""

    def __init__(self, root: str | Path, split: str = "val", batch_size: int = 2, size: Sequence[int] | None = None,
                 limit: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        from torchvision.datasets import Cityscapes

        root = Path(root).expanduser()
        try:
            self.data = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
        except (RuntimeError, FileNotFoundError, ValueError) as err:
            raise DataError(
                f"{root}: no Cityscapes {split} split ({err}); expected leftImg8bit/{split}/<city>/*_leftImg8bit.png "
                f"and gtFine/{split}/<city>/*_gtFine_labelIds.png (download from https://www.cityscapes-dataset.com)"
            ) from None
        if len(self.data) == 0:
            raise DataError(f"{root}: the Cityscapes {split} split holds no images (leftImg8bit/{split}/<city>/)")
        self.count = len(self.data) if limit is None else min(int(limit), len(self.data))
        self.batch_size, self.size = int(batch_size), tuple(size) if size else None
        self.lut = torch.from_numpy(train_id_table())
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def _item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            image, label = self.data[i]
            x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
            y = torch.from_numpy(np.asarray(label, dtype=np.uint8).copy())
        except OSError as err:
            raise DataError(f"{self.data.images[i]}: unreadable image or label ({err})") from None
        if x.shape[:2] != y.shape:
            raise DataError(f"{self.data.images[i]}: image {tuple(x.shape[:2])} and label {tuple(y.shape)} differ in size")
        return x, self.lut[y.long()]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, None]]:
        for start in range(0, self.count, self.batch_size):
            items = [self._item(i) for i in range(start, min(start + self.batch_size, self.count))]
            x = torch.stack([i[0] for i in items]).permute(0, 3, 1, 2).float() / 255.0
            y = torch.stack([i[1] for i in items]).long()
            if self.size is not None:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
                y = F.interpolate(y[:, None].float(), size=self.size, mode="nearest")[:, 0].long()
            yield (x - self.mean) / self.std, y, None


def build_deeplab(num_classes: int = 19, weights: str | Path | None = None) -> nn.Module:
    """torchvision's DeepLabv3-ResNet-50 without downloads; ``weights``: a state dict file to load."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: no such weights file (a state dict of torchvision's deeplabv3_resnet50)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        for key in ("model_state", "state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("aux_classifier.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise DataError(f"{path}: not a state dict of deeplabv3_resnet50 with {num_classes} classes "
                            f"({str(err).splitlines()[0]})") from None
    return model.eval()


class SegmentationProbe:
    """Ranking / switch-off steps of a torchvision DeepLab model (module docstring)."""

    metric = "miou"

    def __init__(self, model: nn.Module):
        self.model = model

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return self.model.backbone(x)["out"], tuple(x.shape[-2:])

    def latent(self, feats) -> torch.Tensor:
        return feats[0].mean(dim=(2, 3))

    def head(self, feats, channels: torch.Tensor | None) -> torch.Tensor:
        f, size = feats
        out = self.model.classifier(mask_channels(f, channels))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def with_model(self, model: nn.Module) -> SegmentationProbe:
        return type(self)(model)


class RegionIoU:
    """mIoU in percent overall and over the left / centre / right thirds of the width (torchmetrics)."""

    def __init__(self, num_classes: int = 19):
        from torchmetrics.classification import MulticlassJaccardIndex

        self.metrics = {name: MulticlassJaccardIndex(num_classes, ignore_index=IGNORE, average="macro")
                        for name in ("overall", *REGIONS)}

    def update(self, logits: torch.Tensor, target: torch.Tensor, region=None) -> None:
        pred = logits.argmax(1).cpu()
        target = target.cpu()
        w = target.shape[-1]
        column = torch.arange(w)
        third = (3 * column) // w  # 0 / 1 / 2 = left / centre / right
        self.metrics["overall"].update(pred, target)
        for code, name in enumerate(REGIONS):
            self.metrics[name].update(pred, torch.where(third == code, target, torch.full_like(target, IGNORE)))

    def compute(self) -> dict[str, float]:
        return {name: round(100.0 * float(m.compute()), 4) for name, m in self.metrics.items()}
