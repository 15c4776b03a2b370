"""Config checks that run before any data is read or any model is built.

Two layers:
* :func:`check_group_overrides` looks at the raw command line before Hydra composes anything, so
  that ``model=foo`` is answered with one line listing the valid models instead of Hydra's
  multi-line composition error;
* small ``require_*`` helpers used by each part of the project to validate its own keys; they
  raise :class:`~spatialprobe.errors.ConfigError` (key, bad value, valid choices).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR
from .errors import ConfigError

# Characters that mark Hydra sweep functions or interpolations; such values are left to Hydra.
_SWEEP_SYNTAX = set("()[]{}$*")


# Options Hydra and its plugins provide beside our yaml files.
BUILTIN_CHOICES = {"hydra/launcher": ["basic", "submitit_local", "submitit_slurm"], "hydra/sweeper": ["basic"],
                   "hydra/job_logging": ["default", "disabled", "none", "stdout"],
                   "hydra/hydra_logging": ["default", "disabled", "none", "hydra_debug"]}


def group_choices(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The option names of a config group (the yaml files of conf/<group>/, and Hydra's own)."""
    folder = conf_dir / group
    own = [p.stem for p in folder.glob("*.yaml")] if folder.is_dir() else []
    return sorted({*own, *BUILTIN_CHOICES.get(group, [])})


def check_group_overrides(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Reject ``group=value`` overrides whose value is not a yaml file of conf/<group>/."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "." in key or not (conf_dir / key).is_dir() or _SWEEP_SYNTAX & set(value):
            continue
        choices = group_choices(key, conf_dir)
        for option in (v.strip() for v in value.split(",")):
            if option and option != "null" and option not in choices:
                raise ConfigError(key, option, f"unknown {key.replace('/', ' ')}", choices)


def get(cfg: DictConfig, key: str, default: object = None) -> object:
    return OmegaConf.select(cfg, key, default=default)


def require_choice(cfg: DictConfig, key: str, choices: Iterable[object]) -> object:
    value = get(cfg, key)
    choices = list(choices)
    if value not in choices:
        raise ConfigError(key, value, "not one of the valid choices", choices)
    return value


def require_number(
    cfg: DictConfig,
    key: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    optional: bool = False,
) -> object:
    """Check that ``key`` holds a number in the given range (None allowed when optional)."""
    value = get(cfg, key)
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(key, value, f"must be {kind}" + (" or null" if optional else ""))
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise ConfigError(key, value, f"must be {'>' if exclusive_minimum else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, value, f"must be <= {maximum}")
    return value


def require_positive_int(cfg: DictConfig, key: str, optional: bool = False) -> object:
    return require_number(cfg, key, integer=True, minimum=1, optional=optional)


def hydra_entry(hydra_main: Callable[[], Any], *checks: Callable[[list[str]], None]) -> None:
    """A console entry point: check the command line where Hydra would only raise (unknown group
    options, plus ``checks``), each problem one line and exit 2, then run the Hydra app.
    ``-v`` / ``--verbose`` shows the dependencies' log lines and warnings on the console too."""
    from .console import capture_warnings, verbose_argv
    from .errors import reported

    sys.argv[1:] = verbose_argv(sys.argv[1:])  # -v: Hydra's default logging, everything on the console
    capture_warnings()
    argv = sys.argv[1:]
    with reported():
        check_group_overrides(argv)
        for check in checks:
            check(argv)
    hydra_main()
