"""The segmentation side of the position study (P section 4.2): ranking and switching off the latent
channels of DeepLabv3-ResNet-50.

* :func:`build_deeplab`: torchvision's ``deeplabv3_resnet50`` loading a state dict the user provides.
* :class:`SegmentationProbe`: the latent is the globally pooled backbone map (2048 channels);
  switching a channel off zeroes it in the map the DeepLab head reads.
* :class:`RegionIoU`: mIoU (torchmetrics) overall and on P's regions: the left and right halves and the
  centre half of the width (1024 px each on the 2048 px image, the centre overlapping both sides
  equally), every other pixel set to unlabelled; the regions scale with the width of resized images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from spatialprobe.data.cityscapes import IGNORE
from spatialprobe.errors import DataError
from spatialprobe.position.probe import REGIONS, mask_channels, model_device


def region_masks(width: int) -> dict[str, torch.Tensor]:
    """Columns of P's regions on a ``width`` px image: left and right halves, and the centre half."""
    column = torch.arange(width)
    half, quarter = width // 2, width // 4
    return {"left": column < half, "centre": (column >= quarter) & (column < quarter + half),
            "right": column >= width - half}


def build_deeplab(num_classes: int = 19, weights: str | Path | None = None, state: dict | None = None,
                  label: str | None = None) -> nn.Module:
    """torchvision's DeepLabv3-ResNet-50 without downloads; ``weights``: a state dict file to load (read without
    running code from it: :func:`spatialprobe.run.checkpoints.load`), or ``state``: one already loaded."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    from spatialprobe.run.checkpoints import load

    if weights is not None and state is None:  # read (or refused) before the network is built
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: no such weights file (a state dict of torchvision's deeplabv3_resnet50)")
        state = load(path)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    if state is not None:
        path = label or weights
        for key in ("model_state", "state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        if not isinstance(state, dict):
            raise DataError(f"{path}: not a state dict of deeplabv3_resnet50 (a mapping of parameter names to tensors)")
        state = {k.removeprefix("module."): v for k, v in state.items()}  # DDP's prefix, then the aux head's keys
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
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
        return self.model.backbone(x.to(model_device(self.model)))["out"], tuple(x.shape[-2:])

    def latent(self, feats) -> torch.Tensor:
        return feats[0].mean(dim=(2, 3))

    def head(self, feats, channels: torch.Tensor | None) -> torch.Tensor:
        f, size = feats
        out = self.model.classifier(mask_channels(f, channels))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def with_model(self, model: nn.Module) -> SegmentationProbe:
        return type(self)(model)


class RegionIoU:
    """mIoU in percent overall and on the left / centre / right regions (:func:`region_masks`), torchmetrics."""

    def __init__(self, num_classes: int = 19):
        from torchmetrics.classification import MulticlassJaccardIndex

        self.metrics = {name: MulticlassJaccardIndex(num_classes, ignore_index=IGNORE, average="macro")
                        for name in ("overall", *REGIONS)}

    def update(self, logits: torch.Tensor, target: torch.Tensor, region=None) -> None:
        pred = logits.argmax(1).cpu()
        target = target.cpu()
        self.metrics["overall"].update(pred, target)
        for name, columns in region_masks(target.shape[-1]).items():
            self.metrics[name].update(pred, torch.where(columns, target, torch.full_like(target, IGNORE)))

    def compute(self) -> dict[str, float]:
        return {name: round(100.0 * float(m.compute()), 4) for name, m in self.metrics.items()}
