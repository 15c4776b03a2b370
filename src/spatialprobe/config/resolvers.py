"""OmegaConf resolvers for values derived from other config keys (registered on import of the package).

``${sp.grid_classes:${.grid},${.target},${.source_classes}}``: the number of targets of the grid
task (n*n cells for ``location``, the source's classes for ``class``);
``${sp.mul:${.cell_size},${.grid}}``: a product (the grid image's side);
``${sp.count_or:${.classes},${.source_classes}}``: the length of a list, or the default when it is null
(cifar10_detect's classes: the chosen source classes, or all of them). Invalid inputs resolve to
None; the config checks (``spatialprobe.config.schema.check_dataset``) then name the key the user set.
``${sp.result_neutral_keys:}``: the override keys left out of a run directory's name
(conf/train.yaml), from ``spatialprobe.config.schema.RESULT_NEUTRAL_KEYS``.
``${sp.cpu_precision:}``: ``bf16-mixed`` on a CPU with bfloat16 instructions (``avx512_bf16`` or
``amx_bf16``), else ``32-true`` (trainer=cpu; bf16 autocast without them is slower than fp32).
Registered when the package is imported, before Hydra composes a config.
"""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import OmegaConf

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _int(value) -> int | None:
    try:
        return int(value) if not isinstance(value, bool) and int(value) == float(value) else None
    except (TypeError, ValueError):
        return None


def grid_classes(grid, target, source_classes):
    n = _int(grid)
    if n is None:
        return None
    return n * n if target == "location" else _int(source_classes)


def mul(a, b):
    a, b = _int(a), _int(b)
    return None if a is None or b is None else a * b


def count_or(items, default):
    if items is None:
        return _int(default)
    return len(items) if OmegaConf.is_list(items) or isinstance(items, list | tuple) else None


@functools.cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (read from the kernel's flags, without importing torch)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in BF16_CPU_FLAGS)


def cpu_precision() -> str:
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def register() -> None:
    from spatialprobe.config.schema import result_neutral_override_keys

    OmegaConf.register_new_resolver("sp.grid_classes", grid_classes, replace=True)
    OmegaConf.register_new_resolver("sp.mul", mul, replace=True)
    OmegaConf.register_new_resolver("sp.count_or", count_or, replace=True)
    OmegaConf.register_new_resolver("sp.result_neutral_keys", result_neutral_override_keys, replace=True)
    OmegaConf.register_new_resolver("sp.cpu_precision", cpu_precision, replace=True)
