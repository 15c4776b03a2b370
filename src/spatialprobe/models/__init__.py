"""Model builders: a registry of architecture families over torchvision models.

The model keys are checked by :func:`spatialprobe.schema.check_model` (no torch needed); the unit
count of every architecture lives there too (``schema.UNIT_COUNTS``, held against these builds by
tests/test_schema.py).
"""

from __future__ import annotations

from omegaconf import DictConfig

from ..schema import unit_count
from . import position
from .base import Family, SpatialNet, init_like_torchvision
from .deeplab import DeepLabFamily
from .mlp import MLPFamily
from .mobilenet import MobileNetV2Family
from .pretrained import load_pretrained
from .resnet import ResNetFamily
from .squeezenet import SqueezeNetFamily
from .vgg import VGGFamily

FAMILIES: list[Family] = [VGGFamily(), ResNetFamily(), MobileNetV2Family(), SqueezeNetFamily(), DeepLabFamily(),
                          MLPFamily()]
ARCHS: dict[str, Family] = {arch: fam for fam in FAMILIES for arch in fam.archs}


def build_model(model_cfg: DictConfig, num_classes: int, image_size: int) -> SpatialNet:
    """Build the unmodified network named by ``model_cfg.arch`` (call under the run's seed).

    ``model.pretrained`` (optional): ``imagenet`` or the path of a state dict; its weights replace the
    initial ones (classifier layers of another shape keep theirs), before any option or method changes
    the network.
    """
    family = ARCHS[model_cfg.arch]
    body = family.build(model_cfg.arch, model_cfg, num_classes, image_size)
    if model_cfg.get("pretrained"):
        load_pretrained(body, model_cfg.arch, str(model_cfg.pretrained))
    body = position.apply_options(body, model_cfg, num_classes)
    return SpatialNet(body, family, model_cfg.arch)


__all__ = ["ARCHS", "FAMILIES", "Family", "SpatialNet", "build_model", "init_like_torchvision", "unit_count"]
