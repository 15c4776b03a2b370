"""The methods that remove spatial information from a unit; one module and one yaml each.

Methods know nothing about architectures: the surgery (:mod:`spatialprobe.surgery`) asks the
architecture family where a method's op goes. The names and kinds are
``spatialprobe.schema.METHOD_KINDS`` (what validation accepts); this registry adds what each does.
Kinds:
* ``op``: a parameter-free stochastic op inserted at the unit's shuffle sites (and skip branch);
* ``gap_fc``: global pooling before the first modified unit, fully connected units after it;
* ``conv1x1``: every kxk conv of the unit becomes 1x1;
* ``none``: nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from ..schema import DOWNSAMPLE, METHOD_KINDS
from .channel_shuffle import ChannelShuffle
from .patch_shuffle import PatchShuffle
from .spatial_shuffle import SpatialShuffle


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # op | gap_fc | conv1x1 | none
    make_op: Callable[[DictConfig], nn.Module] | None = None

    @property
    def parameter_free(self) -> bool:
        return self.kind in ("op", "none")


def _switches(cfg: DictConfig) -> dict:
    return {"train": bool(cfg.get("train", True)), "test": bool(cfg.get("test", True))}


#: the op of every method of kind ``op``
OPS: dict[str, Callable[[DictConfig], nn.Module]] = {
    "spatial_shuffle": lambda c: SpatialShuffle(**_switches(c)),
    "patch_shuffle": lambda c: PatchShuffle(int(c.patch_size), **_switches(c)),
    "channel_shuffle": lambda c: ChannelShuffle(**_switches(c)),
}

METHODS: dict[str, Method] = {name: Method(name, kind, OPS.get(name)) for name, kind in METHOD_KINDS.items()}

__all__ = ["DOWNSAMPLE", "METHODS", "Method"]
