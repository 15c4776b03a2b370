"""Model builders: a registry of architecture families over torchvision models.

The model keys are checked by :func:`spatialprobe.config.schema.check_model` (no torch needed), from the
facts every family module declares beside its adapter (``FACTS``: unit counts, narrowest layer, stems,
strided max-pool; :mod:`spatialprobe.config.facts`). A family module defines ``FAMILY``, its adapter;
this registry imports the modules that declare facts, so adding an architecture family is its module
and its yaml.
"""

from __future__ import annotations

from importlib import import_module

from omegaconf import DictConfig

from spatialprobe.config.facts import arch_facts
from spatialprobe.config.schema import unit_count
from spatialprobe.models import position
from spatialprobe.models.base import Family, SpatialNet, init_like_torchvision
from spatialprobe.models.pretrained import load_pretrained

#: every architecture -> the family that builds it (the family modules that declare FACTS)
ARCHS: dict[str, Family] = {arch: import_module(f"spatialprobe.models.{fact['module']}").FAMILY
                            for arch, fact in arch_facts().items()}
FAMILIES: list[Family] = list({id(f): f for f in ARCHS.values()}.values())


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
