"""The methods that remove spatial information from a unit; one module and one yaml each.

Methods know nothing about architectures: the surgery (:mod:`spatialprobe.surgery`) asks the
architecture family where a method's op goes. Kinds:
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

from .channel_shuffle import ChannelShuffle
from .conv1x1 import DOWNSAMPLE
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


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("none", "none"),
        Method("spatial_shuffle", "op", lambda c: SpatialShuffle(**_switches(c))),
        Method("patch_shuffle", "op", lambda c: PatchShuffle(int(c.patch_size), **_switches(c))),
        Method("channel_shuffle", "op", lambda c: ChannelShuffle(**_switches(c))),
        Method("gap_fc", "gap_fc"),
        Method("conv1x1", "conv1x1"),
    )
}

__all__ = ["DOWNSAMPLE", "METHODS", "Method"]
