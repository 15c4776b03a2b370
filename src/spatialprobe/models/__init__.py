"""Model builders: a registry of architecture families over torchvision models."""

from __future__ import annotations

from omegaconf import DictConfig

from ..config import require_choice, require_number, require_positive_int
from ..errors import ConfigError
from . import position
from .base import Family, SpatialNet, init_like_torchvision
from .deeplab import DeepLabFamily
from .mlp import MLPFamily
from .mobilenet import MobileNetV2Family
from .resnet import STEMS, ResNetFamily
from .squeezenet import SqueezeNetFamily
from .vgg import VGGFamily

FAMILIES: list[Family] = [VGGFamily(), ResNetFamily(), MobileNetV2Family(), SqueezeNetFamily(), DeepLabFamily(),
                          MLPFamily()]
ARCHS: dict[str, Family] = {arch: fam for fam in FAMILIES for arch in fam.archs}


def unit_count(arch: str) -> int:
    """Number of modifiable units of ``arch`` (no model is built)."""
    return ARCHS[arch].unit_counts[arch]


def validate(cfg: DictConfig) -> None:
    require_choice(cfg, "model.arch", sorted(ARCHS))
    require_number(cfg, "model.width", minimum=0, exclusive_minimum=True)
    if not ARCHS[cfg.model.arch].scalable and cfg.model.width != 1:
        raise ConfigError("model.width", cfg.model.width, f"{cfg.model.arch} is built at full width only", [1.0])
    if "stem" in cfg.model:
        require_choice(cfg, "model.stem", STEMS)
    if "fc_width" in cfg.model:
        require_positive_int(cfg, "model.fc_width")
    if "dropout" in cfg.model:
        require_number(cfg, "model.dropout", minimum=0, maximum=1)
    if "hidden" in cfg.model:
        require_positive_int(cfg, "model.hidden")
    size = cfg.get("dataset", {}).get("image_size")
    maxpool = ARCHS[cfg.model.arch].has_strided_maxpool(cfg.model.arch, cfg.model, int(size)) if size else None
    position.validate(cfg, maxpool)  # head (gapnet / permutenet), padding, blurpool


def build_model(model_cfg: DictConfig, num_classes: int, image_size: int) -> SpatialNet:
    """Build the unmodified network named by ``model_cfg.arch`` (call under the run's seed)."""
    family = ARCHS[model_cfg.arch]
    body = position.apply_options(family.build(model_cfg.arch, model_cfg, num_classes, image_size), model_cfg,
                                  num_classes)
    return SpatialNet(body, family, model_cfg.arch)


__all__ = ["ARCHS", "FAMILIES", "Family", "SpatialNet", "build_model", "init_like_torchvision", "unit_count", "validate"]
