"""The command line, checked before Hydra runs: one line for a mistake, then the Hydra app.

* :func:`check_group_overrides` and :func:`check_command_line` look at the command line before Hydra
  runs, so that ``model=foo`` or a typo such as ``model.widht=0.5`` is answered with one line (the
  valid options, the closest keys) instead of Hydra's multi-line composition error, and a rejected
  single run is answered before Hydra composes anything;
* :func:`check_output_overrides`: the output paths given on the command line are writable (Hydra
  creates the output directory before any of our code runs);
* :func:`hydra_entry` and :func:`tool_entry` wrap a Hydra app with these checks; ``-v`` selects
  Hydra's verbose logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.config.checks import _ABSENT, dotted_keys, get, unknown_key
from spatialprobe.errors import ConfigError, UserError, reported

VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_OVERRIDES = ["hydra/job_logging=default", "hydra/hydra_logging=default"]
OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "paths.run_root")

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


def config_dirs(argv: Sequence[str]) -> list[str]:
    """The config directories a command line adds to Hydra's search path: ``--config-dir`` / ``-cd`` and the
    entries of a ``hydra.searchpath=[...]`` override (``file://`` and ``pkg://`` addresses)."""
    dirs: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(f"file://{Path(argv[i + 1]).expanduser().absolute()}")
        elif arg.startswith("--config-dir="):
            dirs.append(f"file://{Path(arg.split('=', 1)[1]).expanduser().absolute()}")
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            value = arg.split("=", 1)[1].strip().strip("[]")
            dirs += [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return dirs


def hydra_group_options(group: str, argv: Sequence[str] = (), conf_dir: Path = CONF_DIR,
                        config_name: str = "train") -> list[str]:
    """The options Hydra itself would offer for ``group``: every entry of its search path (this package's
    configs, the command line's ``--config-dir`` and ``hydra.searchpath``) and the configs of every installed
    Hydra plugin (sweepers, launchers); files named ``_*`` hold shared keys and are no option."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from hydra.errors import HydraException

    extra = config_dirs(argv)
    overrides = [f"hydra.searchpath=[{','.join(extra)}]"] if extra else []
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            options = loader.get_group_options(group, results_filter=ObjectType.CONFIG, config_name=config_name,
                                               overrides=overrides)
    except HydraException:
        return []
    return sorted({o for o in options if not o.startswith("_")})


def check_group_overrides(argv: Sequence[str], conf_dir: Path = CONF_DIR, config_name: str = "train") -> None:
    """Reject ``group=value`` overrides whose value Hydra would not find. An option of this package's configs is
    accepted at once (a glob of conf/<group>/); any other is looked up as Hydra itself would, with the user's
    config directories and the installed plugins (``hydra/sweeper=optuna``, ``hydra/launcher=joblib``)."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "." in key or not (conf_dir / key).is_dir() or _SWEEP_SYNTAX & set(value):
            continue
        known = group_choices(key, conf_dir)
        for option in (v.strip() for v in value.split(",")):
            if option and option != "null" and option not in known:
                known = hydra_group_options(key, argv, conf_dir, config_name)
                if option not in known:
                    raise ConfigError(key, option, f"unknown {key.replace('/', ' ')}", known)


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
    job is composed and checked before any is launched, see :mod:`spatialprobe.launch.sweep`); a multirun whose
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
        from spatialprobe.errors import report

        report(UserError(f"{message}; e.g. {self.example}" if self.example else message))


HELP_FLAGS = ("--help", "-h")


def command_help(config_name: str, argv: Sequence[str], conf_dir: Path = CONF_DIR) -> str:
    """``--help``: the command line, and the options of every config group as Hydra would find them (the
    user's config folders and the installed plugins included; the shared ``_*`` files left out)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    extra = config_dirs(argv)
    overrides = [f"hydra.searchpath=[{','.join(extra)}]"] if extra else []
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = sorted(g for g in loader.get_group_options("", ObjectType.GROUP, config_name, overrides)
                        if g != "hydra" and not g.startswith("_"))
        groups += ["hydra/launcher", "hydra/sweeper"]
        lines = [f"usage: python -m spatialprobe.{config_name} [group=option ...] [key=value ...]   "
                 "(-m: a sweep over comma-separated values)", "", "Configuration groups (group=option):"]
        for group in groups:
            options = sorted(o for o in loader.get_group_options(group, ObjectType.CONFIG, config_name, overrides)
                             if not o.startswith("_") and o != "spatialprobe_local")  # local.yaml's base
            if options:
                lines.append(f"  {group}: {', '.join(options)}")
    lines += ["", "Any key of the composed config can be set (key=value); `--cfg job` prints them all.",
              "Your own configs: --config-dir DIR (or hydra.searchpath=[file://DIR]). Hydra's own flags: --hydra-help.",
              "Every key is documented in the docs (docs/configuration.md)."]
    return "\n".join(lines)


def hydra_entry(hydra_main: Callable[[], Any], *checks: Callable[[list[str]], None],
                config_name: str | None = None, validate: Callable[[DictConfig], object] | None = None) -> None:
    """A console entry point: check the command line where Hydra would only raise (unknown group
    options, ``checks``, then :func:`check_command_line`: unknown keys of ``config_name`` and, for a
    single run, ``validate``), each problem one line and exit 2, then run the Hydra app.
    ``-v`` / ``--verbose`` shows the dependencies' log lines and warnings on the console too."""
    sys.argv[1:] = verbose_argv(sys.argv[1:])  # -v: Hydra's default logging, everything on the console
    capture_warnings()
    argv = sys.argv[1:]
    if config_name is not None and any(a in HELP_FLAGS for a in argv):
        print(command_help(config_name, argv))
        raise SystemExit(0)
    with reported():
        check_group_overrides(argv, config_name=config_name or "train")
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

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def hydra_main(cfg: DictConfig) -> None:
        with reported():
            run(cfg)

    return lambda: hydra_entry(hydra_main, config_name=config_name, validate=validate)


def capture_warnings() -> None:
    """Warnings become log records (logger ``py.warnings``): in the run's log file, off the quiet console."""
    logging.captureWarnings(True)


def verbose_argv(argv: list[str]) -> list[str]:
    """``-v`` / ``--verbose`` replaced by the overrides that select Hydra's default (verbose) logging."""
    if not any(a in VERBOSE_FLAGS for a in argv):
        return argv
    return [a for a in argv if a not in VERBOSE_FLAGS] + VERBOSE_OVERRIDES



def check_output_overrides(argv: list[str]) -> None:
    """Hydra creates the output directory before any of our code runs: check the output paths
    given on the command line (and $SPATIALPROBE_RUNS, or the default run root ``runs`` when neither
    names one) first, so a bad one is one clear line instead of Hydra's traceback."""
    paths = [("SPATIALPROBE_RUNS", os.environ["SPATIALPROBE_RUNS"])] if os.environ.get("SPATIALPROBE_RUNS") else []
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key in OUTPUT_KEYS and value and "$" not in value:
            paths.append((key, value))
    if not paths and not any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        paths.append(("paths.run_root", "runs"))  # conf/paths/default.yaml, relative to where the command runs
    for key, value in paths:  # checked without leaving anything behind (a dry run or a rejected sweep writes nothing)
        problem = unwritable(Path(value).expanduser().absolute())
        if problem:
            raise UserError(f"{key}={value!r}: output directory is not writable ({problem}); "
                            "choose a writable place")


def unwritable(path: Path) -> str | None:
    """Why a directory cannot be created (or written) at ``path``, or None. Tried for real in the nearest
    existing folder (a directory made and removed at once): permission bits say nothing to root, and
    nothing at all of /proc, /sys or a read-only mount."""
    import tempfile

    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".spatialprobe-write-test-", dir=existing))
    except OSError as err:
        return f"{err.strerror or err} in {existing}"
    return None
