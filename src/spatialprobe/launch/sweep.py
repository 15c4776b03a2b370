"""Checks around a Hydra multirun (``python -m spatialprobe.train -m ...``).

:class:`SweepCheck` is a Hydra callback (``hydra.callbacks.sweep_check`` in conf/train.yaml):

* before any job is launched it expands the sweep exactly as Hydra's basic sweeper will
  (``hydra.sweeper.params`` of the experiment, then the command line), composes every job's config
  (:func:`expand_jobs`; a typo in a key is one line naming the closest keys) and validates it
  (:mod:`spatialprobe.config.schema`: k in range for its model, every key), checks that no two jobs share a
  run directory and that a SLURM launcher has ``sbatch`` to submit with. Any problem stops the sweep
  with one line and exit status 2, before a directory is created or a job submitted;
* with ``dry_run=true`` it lists the jobs (run dir, complete or to do) and stops;
* while the jobs run it prints a line per job as it starts and ends, with the sweep's ETA
  (:class:`spatialprobe.launch.progress.SweepProgress`, from the jobs' records: any launcher);
* after the sweep it reads every job's record and prints a summary; a sweep with failed runs
  exits with status 1 (the failed runs keep ``status: failed`` and the reason in their records).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from spatialprobe.config.checks import get
from spatialprobe.errors import UserError, reported
from spatialprobe.run.records import RECORD_NAME, read_json

if TYPE_CHECKING:
    from spatialprobe.launch.progress import SweepProgress


@dataclass
class Job:
    overrides: list[str]
    run_dir: Path
    config: DictConfig | dict  # compose_jobs: the composed DictConfig (with hydra); expand_jobs: the resolved app keys


def expand(overrides: list) -> list[list[str]]:
    """The jobs of parsed overrides, as Hydra's basic sweeper launches them: the product of every
    key's values in first-appearance order, a later override of a key replacing its values."""
    import itertools

    values: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise UserError(f"{o.input_line}: the basic sweeper sweeps lists, range() and choice() only, "
                            f"not {o.value_type.name.lower()}")
    return [list(job) for job in itertools.product(*values.values())]


def sweep_overrides(config: DictConfig, extra: list[str] | None = None) -> list[list[str]]:
    """The override list of every job of the sweep, in Hydra's order (basic sweeper semantics).

    ``extra`` overrides come last and win over the sweep's own (as later command-line overrides do).
    With ``hydra/sweeper=grids`` the sweep is the union of its ``hydra.sweeper.grids``: each grid is
    expanded as the basic sweeper would (the grid's params, ``params``, the command line), and a
    job listed by two grids runs once.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    common = [f"{k}={v}" for k, v in params.items()]
    common += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    common += list(extra or [])
    parser = OverridesParser.create()
    jobs: list[list[str]] = []
    for grid in OmegaConf.select(config, "hydra.sweeper.grids") or [{}]:
        lines = [f"{k}={v}" for k, v in grid.items()] + common
        for job in expand(parser.parse_overrides(lines)):
            if job not in jobs:
                jobs.append(job)
    return jobs


# ${key}, ${.sibling}, ${..key}: the references of an interpolation (also inside a resolver's arguments)
_REFERENCE = re.compile(r"\$\{\s*(\.*[A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}")
# resolvers that name keys in plain arguments, which the pattern above cannot see
_OPAQUE = ("oc.select", "oc.dict")
_ABSENT = object()


def _walk(node: Any, path: tuple[str, ...] = ()):
    """(path, value) of every leaf of a plain config; a list is one leaf."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    else:
        yield path, node


def _references(path: tuple[str, ...], text: str) -> list[str] | None:
    """The dotted keys an interpolation at ``path`` reads, in order (None: it reads keys it does not name)."""
    if any(name in text for name in _OPAQUE):
        return None
    refs = []
    for m in _REFERENCE.finditer(text):
        ref = m.group(1)
        dots = len(ref) - len(ref.lstrip("."))
        if dots:  # relative: one dot is the node's own parent
            ref = ".".join([*path[:-dots], ref[dots:]] if ref[dots:] else path[:-dots])
        refs.append(ref)
    return refs


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _put(config: dict, key: str, value: Any) -> dict:
    """``config`` with ``key`` set to ``value``, copying only the dicts on the way (the rest is shared)."""
    head, _, rest = key.partition(".")
    new = dict(config)
    new[head] = _put(config[head], rest, value) if rest else value
    return new


class _Interpolation:
    """One interpolated value of the composition: the keys it reads, and whether it can be evaluated here
    (a string of plain key references such as ``${model.name}-k${k}``) or needs OmegaConf (a resolver)."""

    def __init__(self, path: tuple[str, ...], value: Any):
        texts = value if isinstance(value, list) else [value]
        refs = [_references(path, str(t)) for t in texts if "${" in str(t)]
        self.reads = None if any(r is None for r in refs) else {r for rs in refs for r in rs}
        text = str(value)
        simple = isinstance(value, str) and "\\" not in text and self.reads is not None and \
            text.count("${") == len(refs[0])
        self.parts = (_REFERENCE.split(text), refs[0]) if simple else None

    def evaluate(self, resolved: dict) -> Any:
        """The value from the other keys' resolved values, as OmegaConf computes it; _ABSENT if it cannot."""
        if self.parts is None:
            return _ABSENT
        pieces, refs = self.parts
        values = [get(resolved, r, _ABSENT) for r in refs]
        if any(v is _ABSENT or isinstance(v, dict | list) for v in values):
            return _ABSENT
        literals = pieces[::2]  # the text around the references
        if len(values) == 1 and literals == ["", ""]:
            return values[0]  # a lone reference keeps the value's type
        return literals[0] + "".join(str(v) + lit for v, lit in zip(values, literals[1:], strict=True))


class _Composition:
    """The composed config of one combination of config-group choices (Hydra's own composition), and what
    its plain ``key=value`` overrides change: every job of a sweep with these choices derives from it."""

    def __init__(self, config: DictConfig):
        self.config = config
        self.raw = OmegaConf.to_container(config, resolve=False)
        self.app_keys = [k for k in config if k != "hydra"]
        self.resolved = {k: _plain(config[k]) for k in self.app_keys}
        dirname = config.hydra.job.config.override_dirname
        # resolved once (exclude_keys comes from a resolver), for hydra_private.override_dirname
        self.dirname = OmegaConf.create({"exclude_keys": list(dirname.exclude_keys), "kv_sep": dirname.kv_sep,
                                         "item_sep": dirname.item_sep})
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.subdir_is_dirname = self.raw["hydra"]["sweep"]["subdir"] == "${hydra.job.override_dirname}"
        # every interpolation of the app keys, and of the sweep directory (it may name app keys)
        leaves = list(_walk({k: self.raw[k] for k in self.app_keys}))
        leaves.append((("hydra", "sweep", "dir"), self.raw["hydra"]["sweep"]["dir"]))
        self.interpolations = {".".join(p): _Interpolation(p, v) for p, v in leaves
                               if "${" in str(v)}

    def quick(self, values: list) -> tuple[dict, str] | None:
        """(resolved app config, sweep dir) of the job with the plain overrides ``values``, without copying the
        composition: the overrides' values replace the composition's resolved ones, and the interpolations
        that read them are evaluated again (here, or by OmegaConf on the composition, which is restored).
        None when that would not be exactly Hydra's result (then: :meth:`exact`)."""
        keys = []
        for o in values:
            raw = get(self.raw, o.key_or_group, _ABSENT)
            value = o.value()
            if (o.is_hydra_override() or o.is_add() or o.is_force_add() or o.is_delete() or raw is _ABSENT
                    or isinstance(raw, dict | list) or isinstance(value, dict | list)
                    or (isinstance(value, str) and "${" in value)):
                return None
            keys.append(o.key_or_group)
        changed, stale = set(keys), []
        while True:  # every interpolation that reads a changed key, directly or through another one
            more = [p for p, i in self.interpolations.items() if p not in changed
                    and (i.reads is None or any(_related(r, c) for r in i.reads for c in changed))]
            if any(self.interpolations[p].reads is None for p in more):
                return None
            if not more:
                break
            changed.update(more)
            stale += more
        resolved = self.resolved
        for o in values:
            resolved = _put(resolved, o.key_or_group, o.value())
        sweep_dir = self.sweep_dir
        pending = list(stale)
        while pending:  # an interpolation is evaluated after the stale ones it reads
            ready = [p for p in pending if not any(_related(r, q) for r in self.interpolations[p].reads
                                                   for q in pending if q != p)]
            if not ready:
                return None
            path = ready[0]
            pending.remove(path)
            value = self.interpolations[path].evaluate(resolved)
            if value is _ABSENT:
                return self._by_omegaconf(values, stale)
            if path == "hydra.sweep.dir":
                sweep_dir = str(value)
            else:
                resolved = _put(resolved, path, value)
        return resolved, sweep_dir

    def _by_omegaconf(self, values: list, stale: list[str]) -> tuple[dict, str]:
        """:meth:`quick` where an interpolation needs OmegaConf (a resolver): set in place, select, restore."""
        saved = [(o.key_or_group, get(self.raw, o.key_or_group)) for o in values]
        try:
            for o in values:
                OmegaConf.update(self.config, o.key_or_group, o.value(), merge=True)  # as Hydra applies them
            fresh = {k: _plain(OmegaConf.select(self.config, k)) for k in [o.key_or_group for o in values] + stale}
        finally:
            for key, raw in reversed(saved):
                OmegaConf.update(self.config, key, raw, merge=False)
        sweep_dir = str(fresh.pop("hydra.sweep.dir", self.sweep_dir))
        resolved = self.resolved
        for key, value in fresh.items():
            resolved = _put(resolved, key, value)
        return resolved, sweep_dir

    def exact(self, values: list) -> DictConfig:
        """The job's config as Hydra composes it: a copy of the composition with ``values`` applied."""
        from spatialprobe.launch.hydra_private import apply_overrides

        job_cfg = _copy(self.config)
        apply_overrides(job_cfg, values)
        return job_cfg

    def check_keys(self, values: list) -> None:
        """A plain override of a key the composition lacks: one line naming the closest keys."""
        from spatialprobe.config.checks import unknown_key

        for o in values:
            if not (o.is_add() or o.is_force_add() or o.is_hydra_override()) \
                    and get(self.raw, o.key_or_group, _ABSENT) is _ABSENT:
                raise unknown_key(o.key_or_group, o.value(), {k: self.raw[k] for k in self.app_keys})


def _copy(config: DictConfig) -> DictConfig:
    import copy

    return copy.deepcopy(config)


def _option_files(group: str, option: str) -> tuple[list[dict], list[str]] | None:
    """The yaml bodies of a group option and of the options of its own group it builds on (``- _base``),
    and the defaults that name other groups (``override /recipe``, ``/x@y``); None for an option with a
    ``@package`` header or not in conf/ (such options are left to Hydra)."""
    from spatialprobe import CONF_DIR

    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file() or "@package" in path.read_text():
        return None
    body = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    bodies, external = [body], []
    for entry in body.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_" and "/" not in entry and ":" not in entry:
            inner = _option_files(group, entry)
            if inner is None:
                return None
            bodies += inner[0]
            external += inner[1]
        elif entry != "_self_":
            external += list(entry) if isinstance(entry, dict) else [str(entry)]
    return bodies, external


def _swapped(master: DictConfig, choices: dict, swaps: dict[str, str]) -> DictConfig | None:
    """The master composition with the options of some groups swapped, where that is exactly Hydra's
    composition: each swapped option is one plain file (no defaults, no ``@package`` header), the
    master's node of the group is its option's file and nothing else (the primary config, a
    ``@package _global_`` option such as an experiment, or another option's defaults other than an
    ``override`` of the group's choice, which the job's own choice beats) writes into the group.
    None otherwise (then Hydra composes it)."""
    from spatialprobe import CONF_DIR

    writers: list[dict] = [OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{master.hydra.job.config_name}.yaml"),
                                                  resolve=False)]
    external: list[str] = []  # the primary's own defaults are the group choices themselves
    for group, option in choices.items():
        if "/" in group or option is None or group in swaps:
            continue
        path = CONF_DIR / group / f"{option}.yaml"
        if not path.is_file():
            return None
        if "@package _global_" in path.read_text():
            writers.append(OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {})
            external += [k for e in writers[-1].get("defaults", []) for k in (e if isinstance(e, dict) else [str(e)])]
            continue
        files = _option_files(group, option)
        if files is None:
            return None
        external += files[1]
    swapped = _copy(master)
    for group, option in swaps.items():
        old, new = _option_files(group, str(choices.get(group))), _option_files(group, option)
        if (old is None or new is None or len(old[0]) != 1 or len(new[0]) != 1 or "defaults" in new[0][0]
                or "defaults" in old[0][0] or any(group in body for body in writers)
                or any(group in e and not e.startswith("override ") for e in external) or group not in master
                or OmegaConf.to_container(master[group], resolve=False) != old[0][0]):
            return None
        with open_dict(swapped):
            swapped[group] = new[0][0]
    return swapped


def _jobs(config: DictConfig, job_overrides: list[list[str]] | None, quick: bool) -> list[Job]:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from spatialprobe.launch.hydra_private import override_dirname

    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create()
    groups_in: dict[str, list[str]] = {}  # config groups under a parent group ("" = top level)

    def is_group(name: str) -> bool:
        parent, _, leaf = name.rpartition("/")
        if parent not in groups_in:
            groups_in[parent] = loader.list_groups(parent)
        return leaf in groups_in[parent]

    parsed_lines: dict[str, Any] = {}  # a sweep repeats most override lines: each is parsed once
    compositions: dict[tuple[str, ...], _Composition] = {}
    # the master config is already the composition of its own group choices (every job carries the master's
    # plain overrides too): jobs with exactly those choices derive from a copy of it instead of a new one, and
    # for the check, jobs that only choose other plain options of a group (method=gap_fc) from a copy with
    # that node swapped, where that is exactly Hydra's composition (_swapped)
    master_choices = OmegaConf.to_container(config.hydra.runtime.choices) if OmegaConf.select(
        config, "hydra.runtime.choices") is not None else {}
    jobs = []
    for overrides in sweep_overrides(config) if job_overrides is None else job_overrides:
        for line in overrides:
            if line not in parsed_lines:
                parsed_lines[line] = parser.parse_override(line)
        parsed = [parsed_lines[line] for line in overrides]
        groups = tuple(o.input_line for o in parsed if is_group(o.key_or_group))
        if groups not in compositions:
            swaps = {o.key_or_group: o.value() for o in parsed if o.input_line in groups
                     and master_choices.get(o.key_or_group, _ABSENT) != o.value()}
            composed = _copy(config) if not swaps else _swapped(config, master_choices, swaps) if quick else None
            compositions[groups] = _Composition(composed or loader.load_sweep_config(config, list(groups)))
        base = compositions[groups]
        values = [o for o in parsed if o.input_line not in groups]
        task = [o for o in parsed if not o.is_hydra_override()]
        try:
            base.check_keys(values)
        except UserError as err:
            raise UserError(f"{err}; in sweep job: {' '.join(overrides)} (nothing was launched)") from None
        fast = base.quick(values) if quick and base.subdir_is_dirname else None
        if fast is not None:
            resolved, sweep_dir = fast
            jobs.append(Job(list(overrides), Path(sweep_dir) / override_dirname(task, base.dirname), resolved))
            continue
        job_cfg = base.exact(values)
        job_cfg.hydra.overrides.task = [o.input_line for o in task]
        job_cfg.hydra.job.override_dirname = override_dirname(task, base.dirname)
        run_dir = Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)
        config_out = {k: _plain(job_cfg[k]) for k in job_cfg if k != "hydra"} if quick else job_cfg
        jobs.append(Job(list(overrides), run_dir, config_out))
    return jobs


def compose_jobs(config: DictConfig, job_overrides: list[list[str]] | None = None) -> list[Job]:
    """Compose the config of every job (default: of the multirun whose master config is ``config``).

    Equivalent to Hydra's per-job composition (``load_sweep_config``), but the defaults list is
    composed once per combination of config-group choices and the plain ``key=value`` overrides are
    applied to a copy, as Hydra itself applies them. Each job's ``config`` is a ``DictConfig`` with
    its hydra node (what ``search_k`` runs).
    """
    return _jobs(config, job_overrides, quick=False)


def expand_jobs(config: DictConfig, job_overrides: list[list[str]] | None = None) -> list[Job]:
    """Every job's run directory and resolved config (a plain dict of its app keys), for checking a sweep.

    The same values as :func:`compose_jobs` (tests/test_sweeps.py holds them equal), without a copy of
    the composed config per job: a job whose overrides are plain ``key=value`` changes of existing keys
    takes the composition's resolved values and re-resolves only the interpolations that read the keys
    it changes. A 150-job K-sweep is checked in a fraction of a second.
    """
    return _jobs(config, job_overrides, quick=True)


#: sweepers whose jobs are the product of their parameters, as :func:`sweep_overrides` expands them
EXACT_SWEEPERS = ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                  "hydra_plugins.spatialprobe_sweeper.GridsSweeper")


def expands_exactly(config: DictConfig) -> bool:
    """Whether the sweep's jobs are known before it runs (the basic and grids sweepers); other sweepers
    (Optuna, ...) choose them while running, and Hydra's own expansion is theirs."""
    return str(OmegaConf.select(config, "hydra.sweeper._target_") or EXACT_SWEEPERS[0]) in EXACT_SWEEPERS


def _sweep_syntax(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:
        return True


def check_launcher(config: DictConfig) -> None:
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        raise UserError("hydra/launcher=slurm needs SLURM's sbatch, which is not on PATH on this machine; "
                        "run the sweep on a cluster login node, or locally with hydra/launcher=local")
    if target.endswith("BoundedLocalLauncher"):
        from spatialprobe.config.schema import check_local_launcher
        from spatialprobe.launch.gpus import check_gpus

        check_gpus(check_local_launcher(config))


def validate_jobs(jobs: list[Job]) -> None:
    from spatialprobe.config.schema import validate_train as validate

    seen: dict[Path, Job] = {}
    for job in jobs:
        try:
            validate(job.config)
        except UserError as err:
            raise UserError(f"{err}; in sweep job: {' '.join(job.overrides)} (nothing was launched)") from None
        other = seen.setdefault(job.run_dir.resolve(), job)
        if other is not job:
            raise UserError(f"sweep jobs '{' '.join(other.overrides)}' and '{' '.join(job.overrides)}' would share "
                            f"the run directory {job.run_dir}; sweep keys that are excluded from the directory "
                            f"name (hydra.job.config.override_dirname.exclude_keys) must not vary")


def job_label(job: Job, varying: set[str]) -> str:
    """``spatial_shuffle k=3`` plus the job's other swept overrides."""
    rest = [o for o in job.overrides if o in varying and o.split("=", 1)[0].lstrip("+~") not in ("method", "k")]
    return " ".join([f"{get(job.config, 'method.name')} k={get(job.config, 'k')}", *rest])


def progress_of(jobs: list[Job]) -> SweepProgress:
    from spatialprobe.launch.progress import SweepProgress

    common = set.intersection(*(set(j.overrides) for j in jobs)) if jobs else set()
    varying = {o for j in jobs for o in j.overrides} - common
    return SweepProgress([(job_label(j, varying), j.run_dir, int(get(j.config, "trainer.max_epochs"))) for j in jobs])


@dataclass
class JobState:
    """Where a sweep's run stands: ``complete``, ``running`` / ``queued`` (a live holder of its ``run.lock``:
    a process elsewhere, a submitted SLURM job), or to do: ``to do`` (never started), ``failed``,
    ``interrupted`` (its record says running, but nothing holds it: killed)."""

    status: str
    holder: Any = None  # spatialprobe.run.lock.Holder of a running / queued run
    reason: str | None = None

    @property
    def live(self) -> bool:
        return self.status in ("running", "queued")

    @property
    def todo(self) -> bool:
        return self.status not in ("complete", "running", "queued")

    def label(self) -> str:
        if self.holder is None:
            return self.status
        return f"{self.status}: {self.holder.describe()}"


def stale_after(job: Job) -> float:
    """The job's ``lock.stale_after_s``."""
    from spatialprobe.run.lock import STALE_AFTER_S

    return float(get(job.config, "lock.stale_after_s", None) or STALE_AFTER_S)


def job_state(run_dir: Path, stale_after_s: float | None = None) -> JobState:
    from spatialprobe.run.lock import QUEUED, STALE_AFTER_S, live_holder

    rec = read_json(run_dir / RECORD_NAME) or {}
    status = rec.get("status")
    if status == "complete":
        return JobState("complete")
    holder = live_holder(run_dir, stale_after_s or STALE_AFTER_S)
    if holder is not None:
        return JobState("queued" if holder.state == QUEUED else "running", holder)
    return JobState({None: "to do", "running": "interrupted"}.get(status, status), reason=rec.get("reason"))


def job_status(run_dir: Path) -> str:
    return job_state(run_dir).status


def summary_counts(states: list[JobState]) -> str:
    """``3 complete, 1 running, 2 queued`` (in that order; only the states present)."""
    from collections import Counter

    counts = Counter(s.status for s in states)
    order = ["complete", "running", "queued", "failed", "interrupted", "to do"]
    return ", ".join(f"{counts[s]} {s}" for s in order if counts[s])


class SweepCheck(Callback):
    """Validate every job before launching any; summarise the records afterwards."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.progress: SweepProgress | None = None

    def __getstate__(self) -> dict:  # submitit pickles the launcher, which holds the callbacks
        return {**self.__dict__, "progress": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not expands_exactly(config):
            return self._chosen_while_running(config)
        with reported():
            check_launcher(config)
            self.jobs = expand_jobs(config)
            validate_jobs(self.jobs)
        if config.get("dry_run"):
            from spatialprobe.launch import cost

            costs, total = [""] * len(self.jobs), None
            if self.jobs and cost.requested(self.jobs[0].config):
                configs = [OmegaConf.create(j.config) if isinstance(j.config, dict) else j.config for j in self.jobs]
                lines, total = cost.report(configs, get(configs[0], "paths.cache_dir"))
                costs = [f"  {line}" for line in lines]
            print(f"dry run: {len(self.jobs)} job(s) in {config.hydra.sweep.dir}")
            for job, text in zip(self.jobs, costs, strict=True):
                state = job_state(job.run_dir, stale_after(job))
                print(f"  [{state.label()}] {job.run_dir}  ({' '.join(job.overrides)}){text}")
            if total:
                print(total)
            raise SystemExit(0)
        from spatialprobe.launch.slurm import figures_job_state, is_slurm

        states = [job_state(job.run_dir, stale_after(job)) for job in self.jobs]
        live = [(job, state) for job, state in zip(self.jobs, states, strict=True) if state.live]
        if live and not any(state.todo for state in states):  # started from another shell, or submitted before
            print(f"sweep {config.hydra.sweep.dir}: nothing to launch: {summary_counts(states)} "
                  f"(of {len(states)} runs)", flush=True)
            for job, state in live:
                print(f"  {state.label()}: {job.run_dir}", flush=True)
            figures = figures_job_state(Path(str(config.hydra.sweep.dir))) if is_slurm(config) else None
            if figures:
                print(f"  {figures}", flush=True)
            raise SystemExit(0)
        for job, state in live:
            print(f"  left alone, {state.label()}: {job.run_dir}", flush=True)
        launcher = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher", "basic")
        at_once = OmegaConf.select(config, "hydra.launcher.max_parallel", default=None) if launcher == "local" else None
        from spatialprobe.launch.slurm import waits

        if not waits(config):  # hydra.launcher.wait=false: the launcher submits and returns
            return
        print(f"sweep {config.hydra.sweep.dir}: {len(self.jobs)} runs (hydra/launcher={launcher}"
              + (f", {at_once} at a time" if at_once else "") + "); their logs are in their run directories",
              flush=True)
        self.progress = progress_of(self.jobs)
        self.progress.start()

    def _chosen_while_running(self, config: DictConfig) -> None:
        """A sweeper that picks its jobs as it goes (Optuna, Nevergrad, ...): no list to check in advance; the
        sweep's fixed part is checked now, and each job by the run itself when it starts."""
        sweeper = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/sweeper", "?")
        with reported():
            check_launcher(config)
            self.jobs = []
            fixed = [o for o in config.hydra.overrides.task if not _sweep_syntax(o)]
            validate_jobs(expand_jobs(config, [list(fixed)]))
        print(f"sweep {config.hydra.sweep.dir}: hydra/sweeper={sweeper} chooses its jobs while it runs; every job "
              "is checked when it starts", flush=True)
        if config.get("dry_run"):
            raise SystemExit(0)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.jobs and not expands_exactly(config):  # the sweeper's own summary stands
            return
        from spatialprobe.launch.slurm import ARRAYS, submit_figures_job, waits

        if self.progress is not None:
            self.progress.stop()
        states = {job.run_dir: job_state(job.run_dir, stale_after(job)) for job in self.jobs}
        if not waits(config):
            self.submitted(config, list(states.values()), ARRAYS, submit_figures_job)
            return
        done = sum(s.status == "complete" for s in states.values())
        unfinished = [d for d, s in states.items() if s.todo]
        elsewhere = [d for d, s in states.items() if s.live]
        print(f"sweep {config.hydra.sweep.dir}: {done} of {len(states)} runs complete"
              + (f", {len(elsewhere)} running elsewhere" if elsewhere else ""), flush=True)
        for d in unfinished:
            reason = states[d].reason
            print(f"  {states[d].status}: {d}" + (f" ({reason})" if reason else ""), flush=True)
        for d in elsewhere:
            print(f"  {states[d].label()}: {d}", flush=True)
        if unfinished:
            raise SystemExit(1)

    @staticmethod
    def submitted(config: DictConfig, states: list[JobState], arrays: list[str], submit_figures_job) -> None:
        """hydra.launcher.wait=false: what was submitted, the figures job after it, and how to look again."""
        sweep_dir = config.hydra.sweep.dir
        if not arrays:
            from spatialprobe.launch.slurm import figures_job_state

            figures = figures_job_state(Path(str(sweep_dir)))
            print(f"sweep {sweep_dir}: nothing submitted: {summary_counts(states)} (of {len(states)} runs)"
                  + (f"; {figures}" if figures else ""), flush=True)
            return
        line = f"sweep {sweep_dir}: submitted as SLURM job array {', '.join(arrays)}: {summary_counts(states)}"
        if OmegaConf.select(config, "hydra.launcher.figures_job", default=True):
            figures = submit_figures_job(config, arrays)
            line += (f"; collect + figures: SLURM job {figures}, when the array has ended (afterany), into "
                     f"{sweep_dir}/results.csv and {sweep_dir}/figures")
        print(line, flush=True)
        print("this shell may close now; run the same command again to see where the sweep stands (it submits "
              "only what is not complete, running or queued)", flush=True)
