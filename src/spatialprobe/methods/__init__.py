"""The methods that remove spatial information from a unit; one module and one yaml each.

Methods know nothing about architectures: the surgery (:mod:`spatialprobe.surgery`) asks the
architecture family where a method's op goes. A method's module declares its ``KIND`` (read without
torch by :mod:`spatialprobe.config.facts`, so validation knows every method), and a method of kind ``op``
defines ``make_op(method_cfg)``. Kinds:

* ``op``: a parameter-free stochastic op inserted at the unit's shuffle sites (and skip branch);
* ``gap_fc``: global pooling before the first modified unit, fully connected units after it;
* ``conv1x1``: every kxk conv of the unit becomes 1x1;
* ``none``: nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from omegaconf import DictConfig
from torch import nn

from spatialprobe.config.facts import method_kinds


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # op | gap_fc | conv1x1 | none
    make_op: Callable[[DictConfig], nn.Module] | None = None

    @property
    def parameter_free(self) -> bool:
        return self.kind in ("op", "none")


def _method(name: str, kind: str) -> Method:
    return Method(name, kind, import_module(f"spatialprobe.methods.{name}").make_op if kind == "op" else None)


METHODS: dict[str, Method] = {name: _method(name, kind) for name, kind in method_kinds().items()}

__all__ = ["METHODS", "Method"]
