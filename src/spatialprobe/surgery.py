"""The surgery: (model, method, K or unit index) -> the same model with its units modified.

This is where a method is applied to an architecture's units (the family answers where an op goes
and what a unit's 1x1 version is; see :mod:`spatialprobe.models.base`). The checks of method, K,
unit, patch size, downsample and strip against the architecture are
:func:`spatialprobe.config.schema.check_method`. Units are the family's modifiable
blocks in forward order; K counts from the last one (K=0: unchanged), ``method.unit=i`` picks a
single unit instead, ``method.strip=n`` removes the last n modified units altogether (depth
ablation). Modules are replaced in place, so the result is still the torchvision model; new
modules are initialised after the baseline was built, so every unmodified parameter keeps the
value the seed gave it, whatever K is.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from omegaconf import DictConfig
from torch import nn

from spatialprobe.methods import METHODS
from spatialprobe.methods.gap_fc import GlobalAvgPool, fc_equivalent
from spatialprobe.models import SpatialNet
from spatialprobe.run.measure import dummy_forward


@dataclass
class SurgeryReport:
    method: str
    modified_units: list[int] = field(default_factory=list)
    stripped_units: list[int] = field(default_factory=list)
    unit_names: list[str] = field(default_factory=list)


def selected_units(n_units: int, k: int, unit: int | None) -> list[int]:
    return [int(unit)] if unit is not None else list(range(n_units - int(k), n_units))


def _wrap(op: nn.Module, module: nn.Module, where: str) -> nn.Module:
    parts = [("shuffle", op), ("conv", module)] if where == "before" else [("block", module), ("shuffle", op)]
    return nn.Sequential(OrderedDict(parts))


def unit_with_ops(family, unit: nn.Module, make_op) -> nn.Module:
    """``unit`` with a fresh op from ``make_op()`` at each of its shuffle sites and on its skip input."""
    for site, where in family.shuffle_sites(unit):
        if site == "":
            unit = _wrap(make_op(), unit, where)
        else:
            unit.set_submodule(site, _wrap(make_op(), unit.get_submodule(site), where))
    return family.with_skip_op(unit, make_op())


def _apply_gap_fc(model: SpatialNet, first_path: str) -> None:
    """Pool globally at the input of ``first_path``; FC equivalents for every layer after it."""
    body = model.body
    names = [name for name, _ in body.named_modules()]
    start = names.index(first_path)
    replacements = []
    for name, module in list(body.named_modules())[start:]:
        new = fc_equivalent(module)
        if new is not None:
            replacements.append((name, new))
    for name, new in replacements:
        body.set_submodule(name, new)
    body.set_submodule(first_path, nn.Sequential(OrderedDict(gap=GlobalAvgPool(), unit=body.get_submodule(first_path))))


def _refit_after_strip(model: SpatialNet, last_path: str, image_size: int) -> None:
    """After units were removed, rebuild the first layer behind them whose input width changed."""
    body = model.body
    names = [name for name, _ in body.named_modules()]
    after = [(n, m) for n, m in body.named_modules()
             if names.index(n) > names.index(last_path) and not n.startswith(last_path + ".")
             and isinstance(m, nn.Conv2d | nn.Linear)]
    if not after:
        return
    name, layer = after[0]
    seen: dict[str, int] = {}

    class _Stop(Exception):
        pass

    def grab(_module, args):
        seen["c"] = args[0].shape[1]
        raise _Stop

    handle = layer.register_forward_pre_hook(grab)
    try:
        dummy_forward(body, image_size, batch=2)
    except _Stop:
        pass
    finally:
        handle.remove()
    c = seen.get("c")
    in_dim = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
    if c is None or c == in_dim:
        return
    if isinstance(layer, nn.Conv2d):
        new = type(layer)(c, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          bias=layer.bias is not None)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    else:
        new = type(layer)(c, layer.out_features, bias=layer.bias is not None)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    body.set_submodule(name, new)


def apply(model: SpatialNet, method_cfg: DictConfig, k: int, image_size: int = 32) -> SurgeryReport:
    """Modify ``model`` in place as ``method_cfg`` says, on the last ``k`` units (or ``method.unit``)."""
    method = METHODS[method_cfg.name]
    names = model.unit_names()
    chosen = selected_units(len(names), k, method_cfg.get("unit")) if method.kind != "none" else []
    strip = int(method_cfg.get("strip", 0) or 0)
    stripped = chosen[len(chosen) - strip:] if strip else []
    kept = [i for i in chosen if i not in stripped]
    report = SurgeryReport(method.name, chosen, stripped, [names[i] for i in chosen])
    if method.kind == "op":
        for i in kept:
            unit = model.body.get_submodule(names[i])
            model.body.set_submodule(names[i], unit_with_ops(model.family, unit, lambda: method.make_op(method_cfg)))
    elif method.kind == "conv1x1":
        downsample = method_cfg.get("downsample", "avgpool")
        for i in kept:
            model.body.set_submodule(names[i], model.family.conv1x1(model.body.get_submodule(names[i]), downsample))
    for i in stripped:
        model.body.set_submodule(names[i], nn.Identity())
    if method.kind == "gap_fc" and chosen:
        _apply_gap_fc(model, names[chosen[0]])
    if stripped:
        _refit_after_strip(model, names[stripped[-1]], image_size)
    return report
