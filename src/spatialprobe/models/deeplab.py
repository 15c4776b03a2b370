"""DeepLabv3-ResNet-50 (torchvision), the segmentation network of P section 4.2. Units: the 16 bottlenecks of
its dilated ResNet-50 backbone, so the surgery and the part B model options reach it like a classifier's.

``model.weights_backbone``: a state dict of torchvision's ImageNet ResNet-50 (e.g. ``resnet50-0676ba61.pth``,
what torchvision's segmentation reference starts from; nothing is downloaded here), or null (random
initialisation). ``model.aux_loss``: the FCN auxiliary head on ``layer3`` (the reference trains with it).
The seam: ``forward_features`` is the backbone's last map (2048 channels, stride 8), ``pool`` its global
average (the latent whose channels P ranks); the decoder reads the map itself, so there is no
``forward_head`` of the latent. ``forward`` returns torchvision's dict (``out``, and ``aux`` with the aux head).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from spatialprobe.errors import DataError
from spatialprobe.models.resnet import ResNetFamily
from spatialprobe.run.checkpoints import UnreadableFile, load

#: Read without importing this module by spatialprobe.config.facts (the torch-free config checks).
FACTS = {
    "deeplabv3_resnet50": {"units": 16, "narrowest": ["conv1 and layer1", 64], "full_width_only": True,
                           "strided_maxpool": "always"},
}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load an ImageNet ResNet-50 state dict (its ``fc`` is dropped) into DeepLab's backbone."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file (model.weights_backbone: a state dict of torchvision's resnet50, "
                        "e.g. resnet50-0676ba61.pth from https://download.pytorch.org/models/)")
    try:
        state = load(path, f"model.weights_backbone={str(path)!r}")  # tensors and plain data only: no code runs
    except UnreadableFile as err:
        raise DataError(f"{path}: not a readable state dict ({err.reason})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a ResNet-50 state dict (a mapping of parameter names to tensors)")
    state = {k: v for k, v in state.get("state_dict", state).items() if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise DataError(f"{path}: not a ResNet-50 state dict (missing {list(missing)[:3]}, unexpected "
                        f"{list(unexpected)[:3]})")


class DeepLabFamily(ResNetFamily):
    archs = tuple(FACTS)

    def build(self, arch: str, cfg, num_classes: int, image_size: int) -> nn.Module:
        from torchvision.models.segmentation import deeplabv3_resnet50

        body = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes,
                                  aux_loss=bool(cfg.get("aux_loss", True)))
        if cfg.get("weights_backbone"):
            load_backbone_weights(body.backbone, cfg.weights_backbone)
        return body

    def unit_names(self, body: nn.Module) -> list[str]:
        return [f"backbone.layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(body.backbone, f"layer{i}")))]

    def forward_features(self, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return body.backbone(x)["out"]

    def pool(self, body: nn.Module, f: torch.Tensor) -> torch.Tensor:
        return f.mean(dim=(2, 3))

    def forward_head(self, body: nn.Module, z: torch.Tensor) -> torch.Tensor:
        raise TypeError("DeepLab's decoder reads the backbone map, not its pooled latent")


FAMILY = DeepLabFamily()
