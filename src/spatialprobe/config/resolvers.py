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
``SPATIALPROBE_CPU_BF16=1`` / ``=0`` forces the answer to "this CPU has bfloat16" (for every run of the
process and its children: the resolver, ``evaluate``, the benchmarks), e.g. to run the test suite as on the
other kind of CPU; unset or empty, the CPU's flags decide.
Registered when the package is imported, before Hydra composes a config.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from omegaconf import OmegaConf

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: forces :func:`cpu_has_bf16`'s answer: 1 (as on a CPU with bfloat16 instructions) or 0 (as on one without)
CPU_BF16_ENV = "SPATIALPROBE_CPU_BF16"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


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
def cpuinfo_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU described by ``cpuinfo`` computes bfloat16 natively (the kernel's flags; no torch)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in BF16_CPU_FLAGS)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively: ``$SPATIALPROBE_CPU_BF16`` when set (1 / 0), else its flags."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced in _TRUE:
        return True
    if forced in _FALSE:
        return False
    if forced:
        from spatialprobe.errors import ConfigError

        raise ConfigError(f"${CPU_BF16_ENV}", forced, "forces whether this CPU has bfloat16 instructions",
                          ["1", "0", "unset (the CPU's flags decide)"])
    return cpuinfo_has_bf16()


def cpu_precision() -> str:
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def register() -> None:
    from spatialprobe.config.schema import result_neutral_override_keys

    OmegaConf.register_new_resolver("sp.grid_classes", grid_classes, replace=True)
    OmegaConf.register_new_resolver("sp.mul", mul, replace=True)
    OmegaConf.register_new_resolver("sp.count_or", count_or, replace=True)
    OmegaConf.register_new_resolver("sp.result_neutral_keys", result_neutral_override_keys, replace=True)
    OmegaConf.register_new_resolver("sp.cpu_precision", cpu_precision, replace=True)
