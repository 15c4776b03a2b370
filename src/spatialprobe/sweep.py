"""Checks around a Hydra multirun (``python -m spatialprobe.train -m ...``).

:class:`SweepCheck` is a Hydra callback (``hydra.callbacks.sweep_check`` in conf/train.yaml):

* before any job is launched it expands the sweep exactly as Hydra's basic sweeper will
  (``hydra.sweeper.params`` of the experiment, then the command line), composes every job's config
  and validates it (k in range for its model, every key), checks that no two jobs share a run
  directory and that a SLURM launcher has ``sbatch`` to submit with. Any problem stops the sweep
  with one line and exit status 2, before a directory is created or a job submitted;
* with ``dry_run=true`` it lists the jobs (run dir, complete or to do) and stops;
* while the jobs run it prints a line per job as it starts and ends, with the sweep's ETA
  (:class:`spatialprobe.progress.SweepProgress`, from the jobs' records: any launcher);
* after the sweep it reads every job's record and prints a summary; a sweep with failed runs
  exits with status 1 (the failed runs keep ``status: failed`` and the reason in their records).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import UserError, reported
from .records import RECORD_NAME, read_json

if TYPE_CHECKING:
    from .progress import SweepProgress


@dataclass
class Job:
    overrides: list[str]
    run_dir: Path
    config: DictConfig


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


def compose_jobs(config: DictConfig, job_overrides: list[list[str]] | None = None) -> list[Job]:
    """Compose the config of every job (default: of the multirun whose master config is ``config``).

    Equivalent to Hydra's per-job composition (``load_sweep_config``), but the defaults list is
    composed once per combination of config-group choices and the plain ``key=value`` overrides are
    applied to a copy, as Hydra itself applies them: a 150-job K-sweep is checked in seconds.
    """
    import copy

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .hydra_private import apply_overrides, override_dirname

    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create()
    groups_in: dict[str, list[str]] = {}  # config groups under a parent group ("" = top level)

    def is_group(name: str) -> bool:
        parent, _, leaf = name.rpartition("/")
        if parent not in groups_in:
            groups_in[parent] = loader.list_groups(parent)
        return leaf in groups_in[parent]

    bases: dict[tuple[str, ...], DictConfig] = {}
    jobs = []
    for overrides in sweep_overrides(config) if job_overrides is None else job_overrides:
        parsed = parser.parse_overrides(list(overrides))
        groups = tuple(o.input_line for o in parsed if is_group(o.key_or_group))
        if groups not in bases:
            bases[groups] = loader.load_sweep_config(config, list(groups))
        job_cfg = copy.deepcopy(bases[groups])
        apply_overrides(job_cfg, [o for o in parsed if o.input_line not in groups])
        task = [o for o in parsed if not o.is_hydra_override()]
        job_cfg.hydra.overrides.task = [o.input_line for o in task]
        job_cfg.hydra.job.override_dirname = override_dirname(task, config.hydra.job.config.override_dirname)
        run_dir = Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)
        jobs.append(Job(list(overrides), run_dir, job_cfg))
    return jobs


def check_launcher(config: DictConfig) -> None:
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    if target.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        raise UserError("hydra/launcher=slurm needs SLURM's sbatch, which is not on PATH on this machine; "
                        "run the sweep on a cluster login node, or locally with hydra/launcher=local")
    if target.endswith("BoundedLocalLauncher"):
        from hydra_plugins.spatialprobe_launcher import check_gpus

        from .config import require_number

        require_number(config, "hydra.launcher.max_parallel", integer=True, minimum=1, optional=True)
        per_job = require_number(config, "hydra.launcher.gpus_per_node", integer=True, minimum=0, optional=True)
        check_gpus(int(per_job or 0))


def validate_jobs(jobs: list[Job]) -> None:
    from .train import validate

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
    return " ".join([f"{job.config.method.name} k={job.config.k}", *rest])


def progress_of(jobs: list[Job]) -> SweepProgress:
    from .progress import SweepProgress

    common = set.intersection(*(set(j.overrides) for j in jobs)) if jobs else set()
    varying = {o for j in jobs for o in j.overrides} - common
    return SweepProgress([(job_label(j, varying), j.run_dir, int(j.config.trainer.max_epochs)) for j in jobs])


def job_status(run_dir: Path) -> str:
    rec = read_json(run_dir / RECORD_NAME) or {}
    return rec.get("status") or "to do"


class SweepCheck(Callback):
    """Validate every job before launching any; summarise the records afterwards."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.progress: SweepProgress | None = None

    def __getstate__(self) -> dict:  # submitit pickles the launcher, which holds the callbacks
        return {**self.__dict__, "progress": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with reported():
            check_launcher(config)
            self.jobs = compose_jobs(config)
            validate_jobs(self.jobs)
        if config.get("dry_run"):
            from . import cost

            costs, total = [""] * len(self.jobs), None
            if self.jobs and cost.requested(self.jobs[0].config):
                lines, total = cost.report([j.config for j in self.jobs], self.jobs[0].config.paths.cache_dir)
                costs = [f"  {line}" for line in lines]
            print(f"dry run: {len(self.jobs)} job(s) in {config.hydra.sweep.dir}")
            for job, text in zip(self.jobs, costs, strict=True):
                print(f"  [{job_status(job.run_dir)}] {job.run_dir}  ({' '.join(job.overrides)}){text}")
            if total:
                print(total)
            raise SystemExit(0)
        launcher = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher", "basic")
        at_once = OmegaConf.select(config, "hydra.launcher.max_parallel", default=None) if launcher == "local" else None
        print(f"sweep {config.hydra.sweep.dir}: {len(self.jobs)} runs (hydra/launcher={launcher}"
              + (f", {at_once} at a time" if at_once else "") + "); their logs are in their run directories",
              flush=True)
        self.progress = progress_of(self.jobs)
        self.progress.start()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        statuses = {job.run_dir: job_status(job.run_dir) for job in self.jobs}
        failed = [d for d, s in statuses.items() if s != "complete"]
        print(f"sweep {config.hydra.sweep.dir}: {len(statuses) - len(failed)} of {len(statuses)} runs complete",
              flush=True)
        for d in failed:
            reason = (read_json(d / RECORD_NAME) or {}).get("reason")
            print(f"  {statuses[d]}: {d}" + (f" ({reason})" if reason else ""), flush=True)
        if failed:
            raise SystemExit(1)
