"""Config checks that run before any data is read or any model is built.

Three layers:
* :func:`check_group_overrides` and :func:`check_command_line` look at the command line before Hydra
  runs, so that ``model=foo`` or a typo such as ``model.widht=0.5`` is answered with one line (the
  valid options, the closest keys) instead of Hydra's multi-line composition error, and a rejected
  single run is answered before Hydra composes anything;
* small ``require_*`` helpers that raise :class:`~spatialprobe.errors.ConfigError` (key, bad value,
  valid choices) or :class:`~spatialprobe.errors.MissingKeyError` (a mandatory key, with an example);
* :mod:`spatialprobe.schema` uses them to say what a valid configuration is, key by key.

The helpers read a composed ``DictConfig`` or a plain (resolved) dict alike.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR
from .errors import ConfigError, MissingKeyError, UserError

# Characters that mark Hydra sweep functions or interpolations; such values are left to Hydra.
_SWEEP_SYNTAX = set("()[]{}$*")


# Options Hydra and its plugins provide beside our yaml files.
BUILTIN_CHOICES = {"hydra/launcher": ["basic", "submitit_local", "submitit_slurm"], "hydra/sweeper": ["basic"],
                   "hydra/job_logging": ["default", "disabled", "none", "stdout"],
                   "hydra/hydra_logging": ["default", "disabled", "none", "hydra_debug"]}


def group_choices(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The option names of a config group (the yaml files of conf/<group>/, and Hydra's own).

    Files whose name starts with ``_`` (``_base.yaml``) hold keys the options share; they are no option.
    """
    folder = conf_dir / group
    own = [p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")] if folder.is_dir() else []
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


_ABSENT = object()


def get(cfg: DictConfig | Mapping, key: str, default: object = None) -> object:
    """The value at the dotted ``key`` (interpolations resolved), or ``default`` when there is no such key."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig):
            return OmegaConf.select(node, ".".join(parts[i:]), default=default)
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def has(cfg: DictConfig | Mapping, key: str) -> bool:
    """Whether the config has the dotted ``key`` (whatever its value, null included)."""
    return get(cfg, key, _ABSENT) is not _ABSENT


def require_given(cfg: DictConfig | Mapping, key: str, example: str, what: str) -> object:
    """A mandatory key (``???`` in its yaml, or null where the command needs it): one line with an example."""
    if isinstance(cfg, DictConfig) and "." not in key and key in cfg and OmegaConf.is_missing(cfg, key):
        value = None
    else:
        value = get(cfg, key)
    if value is None or value == "???" or value == "":
        raise MissingKeyError(key, what, f"{key}={example}")
    return value


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


def dotted_keys(node: Mapping, prefix: str = "") -> list[str]:
    """Every dotted key of a plain nested dict, containers included."""
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


def unknown_key(key: str, value: object, config: Mapping) -> ConfigError:
    """The one-line answer to an override of a key that ``config`` (a plain, unresolved dict) lacks:
    the closest existing keys, and the keys that do exist where it was looked for."""
    keys = [k for k in dotted_keys(config) if not k.startswith("hydra.") and k != "hydra"]
    parent, _, _ = key.rpartition(".")
    while parent and parent not in keys:
        parent = parent.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    scores = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in keys), reverse=True)
    close = [k for r, k in scores[:3] if r >= max(0.6, scores[0][0] - 0.05)] if scores else []
    reason = f"{parent or 'the config'} has no key {key[len(parent) + 1 if parent else 0:]!r}"
    reason += f"; did you mean {' or '.join(close)}?" if close else f"; a new key needs +{key}=..."
    return ConfigError(key, value, reason, sorted(siblings))


def _primary_keys(config_name: str, conf_dir: Path) -> set[str]:
    """The dotted keys the primary config file sets itself (always in the composed config)."""
    body = OmegaConf.to_container(OmegaConf.load(conf_dir / f"{config_name}.yaml"), resolve=False)
    return set(dotted_keys({k: v for k, v in body.items() if k not in ("defaults", "hydra")}))


def check_command_line(argv: Sequence[str], config_name: str, validate: Callable[[DictConfig], object] | None = None,
                       conf_dir: Path = CONF_DIR) -> None:
    """Compose the config as Hydra will and answer a mistake in one line before Hydra runs.

    * A ``key=value`` override of a key the config lacks names the closest keys (Hydra would print a
      multi-line composition error);
    * a single run (no ``-m``) is checked by ``validate`` (the entry point's schema check): a rejected
      configuration never reaches Hydra, which would compose it twice more and create the output
      directory first.

    A command line with other flags (``--cfg job``, ``--config-dir``, ...) is left to Hydra.

    Sweeps are left out of the composition, as Hydra leaves them out of a multirun's master config (each
    job is composed and checked before any is launched, see :mod:`spatialprobe.sweep`); a multirun whose
    plain overrides all name keys of the primary config file composes nothing here.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return  # --cfg, --config-dir, --help ...: Hydra's own business
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-") and "=" in a])
    except HydraException:
        return  # a syntax error: Hydra's own message says where
    fixed = [o for o in overrides if not o.is_sweep_override()]
    keys = [o for o in fixed if not o.is_hydra_override() and not o.is_add() and not o.is_force_add()
            and not o.is_delete() and not (conf_dir / o.key_or_group).is_dir()]
    single = validate is not None and not flags  # one run, not a multirun
    if not single and all(o.key_or_group in _primary_keys(config_name, conf_dir) for o in keys):
        return
    from hydra import compose, initialize_config_dir

    def composed(lines: list[str]) -> DictConfig | None:
        try:
            with initialize_config_dir(str(conf_dir), version_base="1.3"):
                return compose(config_name, overrides=lines)
        except HydraException:
            return None

    cfg = composed([o.input_line for o in fixed])
    if cfg is None:  # which override failed? a key the config lacks is ours to answer, anything else Hydra's
        base = composed([o.input_line for o in fixed if o not in keys])
        raw = OmegaConf.to_container(base, resolve=False) if base is not None else None
        for o in keys if raw is not None else []:
            if get(raw, o.key_or_group, _ABSENT) is _ABSENT:
                raise unknown_key(o.key_or_group, o.value(), raw)
        return
    if single:
        validate(cfg)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors (a missing argument, a bad option) are the project's one line, exit 2."""

    def __init__(self, *args, example: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.example = example

    def error(self, message: str) -> None:
        from .errors import report

        report(UserError(f"{message}; e.g. {self.example}" if self.example else message))


def hydra_entry(hydra_main: Callable[[], Any], *checks: Callable[[list[str]], None],
                config_name: str | None = None, validate: Callable[[DictConfig], object] | None = None) -> None:
    """A console entry point: check the command line where Hydra would only raise (unknown group
    options, ``checks``, then :func:`check_command_line`: unknown keys of ``config_name`` and, for a
    single run, ``validate``), each problem one line and exit 2, then run the Hydra app.
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
        if config_name is not None:
            check_command_line(argv, config_name, validate)
    hydra_main()


def tool_entry(config_name: str, run: Callable[[DictConfig], Any],
               validate: Callable[[DictConfig], object] | None = None) -> Callable[[], None]:
    """The console entry of a tool that composes ``conf/<config_name>.yaml`` and calls ``run(cfg)``, whose
    UserErrors become one line and exit status 2 (spatialprobe.rank, spatialprobe.decode). ``validate``
    (its schema check) answers a bad command line before Hydra runs (:func:`check_command_line`)."""
    import hydra

    from .errors import reported

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def hydra_main(cfg: DictConfig) -> None:
        with reported():
            run(cfg)

    return lambda: hydra_entry(hydra_main, config_name=config_name, validate=validate)
