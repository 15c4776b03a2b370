"""Hydra launcher plugins of spatialprobe (Hydra finds launchers in the ``hydra_plugins`` namespace).

``BoundedLocalLauncher`` (``hydra/launcher=local``) is hydra-submitit-launcher's local launcher
with a sliding window of ``max_parallel`` slots: a job starts as soon as any slot frees (submitit's
own local launcher starts every job at once). With ``gpus_per_node=g`` every slot owns g GPUs of
its own: slot i gets ids ``i*g .. i*g+g-1`` of the visible list ($CUDA_VISIBLE_DEVICES, else every
GPU of the machine), and each job of that slot sees exactly those as its ``CUDA_VISIBLE_DEVICES``.
With fewer GPUs than ``max_parallel * g`` it runs as many jobs at a time as whole groups of g fit
(one warning line says so); with fewer than g the sweep is refused before it starts.

Everything else is submitit's: each job is a local submitit job (timeouts, the signal before the
time limit and the requeue after it, logs in ``.submitit/<job id>/``). A job whose process dies
without a result (killed, out of memory) is reported in one line and the sweep goes on; the
sweep's summary then lists its run as unfinished.

``SubmitSlurmLauncher`` (``hydra/launcher=slurm``) is hydra-submitit-launcher's SLURM launcher that submits
only the runs to do (not complete, not running or queued elsewhere: their ``run.lock``), marks each as queued
for its array task, and with ``wait=false`` returns at once, after the collect + figures job
(:mod:`spatialprobe.launch.slurm`).
"""

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from spatialprobe.launch.gpus import describe, gpu_slots, visible_gpus  # noqa: E402

log = logging.getLogger(__name__)
POLL_S = 0.1  # how often running jobs are checked


@dataclass
class BoundedLocalQueueConf(LocalQueueConf):
    """submitit's local launcher config (``submitit_local``) plus ``max_parallel``. A subclass, because
    submitit's config is a structured (closed) one: a yaml on top of it cannot add a key."""

    _target_: str = "hydra_plugins.spatialprobe_launcher.BoundedLocalLauncher"
    max_parallel: Optional[int] = 1  # noqa: UP045 (OmegaConf reads it; no __future__ annotations here:
    #   Hydra runs this module without registering it in sys.modules, which dataclasses then need)


@dataclass
class SubmitSlurmQueueConf(SlurmQueueConf):
    """submitit's SLURM launcher config (``submitit_slurm``) plus ``wait`` and ``figures_job``."""

    _target_: str = "hydra_plugins.spatialprobe_launcher.SubmitSlurmLauncher"
    wait: bool = True  # false: submit the array (and the figures job) and return
    figures_job: bool = True  # with wait=false: collect + plot as a SLURM job after the array (afterany)


# the bases of conf/hydra/launcher/local.yaml and slurm.yaml (Hydra imports this module when it scans hydra_plugins)
ConfigStore.instance().store(group="hydra/launcher", name="spatialprobe_local", node=BoundedLocalQueueConf,
                             provider="spatialprobe")
ConfigStore.instance().store(group="hydra/launcher", name="spatialprobe_slurm", node=SubmitSlurmQueueConf,
                             provider="spatialprobe")


class _Executors:
    """What both launchers share: submitit's executor as hydra-submitit-launcher builds it, and a job's result."""

    def _executor(self) -> Any:
        """A submitit executor with this launcher's parameters (as the base class builds it)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        known = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in known else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    @staticmethod
    def _result(job: Any, idx: int, overrides: Sequence[str]) -> Any:
        from hydra.core.utils import JobReturn, JobStatus

        try:
            return job.results()[0]
        except Exception as err:  # the process ended without a result: killed, out of memory, too many timeouts
            reason = " ".join(str(err).split("Error stream")[0].split()) or type(err).__name__  # not its log's tail
            print(f"spatialprobe: error: sweep job #{idx} ({' '.join(overrides)}) ended without a result; "
                  f"the sweep goes on (logs: {job.paths.folder}): {reason}", file=sys.stderr, flush=True)
            return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)


class BoundedLocalLauncher(_Executors, LocalLauncher):
    def __init__(self, max_parallel: int | None = 1, **params: Any) -> None:
        if max_parallel is not None and (isinstance(max_parallel, bool) or int(max_parallel) < 1):
            raise ValueError(f"hydra.launcher.max_parallel={max_parallel!r} is invalid: must be >= 1 or null")
        super().__init__(**params)
        self.max_parallel = None if max_parallel is None else int(max_parallel)

    def __call__(self, *args: Any, gpus: Sequence[str] = ()) -> Any:
        """Run one job (in its submitit process) on its slot's GPUs, before anything touches CUDA."""
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return super().__call__(*args)

    def _slots(self, jobs: int) -> list[list[str]]:
        wanted = min(self.max_parallel or jobs, jobs)
        per_job = int(self.params.get("gpus_per_node") or 0)
        if per_job <= 0:
            return gpu_slots([], wanted, 0)
        gpus = visible_gpus()
        slots = gpu_slots(gpus, wanted, per_job)
        if len(slots) < wanted:
            print(f"spatialprobe: warning: hydra/launcher=local: max_parallel={wanted} jobs x gpus_per_node={per_job} "
                  f"need {wanted * per_job} GPUs, {describe(gpus)}: running {len(slots)} job(s) at a time",
                  file=sys.stderr, flush=True)
        return slots

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """Run the jobs through a sliding window of slots; results in job order."""
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides

        assert self.config is not None
        slots = self._slots(len(job_overrides))
        executor = self._executor()
        log.info(f"Local sweep of {len(job_overrides)} job(s), {len(slots)} at a time, output dir: "
                 f"{self.config.hydra.sweep.dir}")
        waiting = list(enumerate(job_overrides))
        free = list(range(len(slots)))
        running: dict[int, tuple[int, Any]] = {}  # slot -> (position in job_overrides, submitit job)
        results: list[Any] = [None] * len(job_overrides)
        while waiting or running:
            while waiting and free:
                slot = free.pop(0)
                pos, overrides = waiting.pop(0)
                idx = initial_job_idx + pos
                gpus = slots[slot]
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}" + (f" (GPUs {','.join(gpus)})" if gpus else ""))
                job = executor.submit(self, list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                      Singleton.get_state(), gpus=gpus)
                running[slot] = (pos, job)
            time.sleep(POLL_S)
            for slot, (pos, job) in list(running.items()):
                if job.done():
                    results[pos] = self._result(job, initial_job_idx + pos, job_overrides[pos])
                    del running[slot]
                    free.append(slot)
        return results


class SubmitSlurmLauncher(_Executors, SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher: one job array of the runs to do; ``wait=false`` returns at once."""

    def __init__(self, wait: bool = True, figures_job: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.wait, self.figures_job = bool(wait), bool(figures_job)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from hydra.core.singleton import Singleton
        from hydra.core.utils import JobReturn, JobStatus, filter_overrides

        from spatialprobe.launch.slurm import array_id, record_submission
        from spatialprobe.launch.sweep import expand_jobs, job_state, stale_after
        from spatialprobe.run.lock import RunInUse, reserve

        assert self.config is not None
        jobs = expand_jobs(self.config, [list(o) for o in job_overrides])
        todo = [i for i, job in enumerate(jobs) if job_state(job.run_dir, stale_after(job)).todo]
        results: list[Any] = [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=None)
                              for o in job_overrides]
        if not todo:
            return results
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        params = []
        for i in todo:
            log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(job_overrides[i]))}")
            params.append((list(job_overrides[i]), "hydra.sweep.dir", initial_job_idx + i,
                           f"job_id_for_{initial_job_idx + i}", Singleton.get_state()))
        submitted = self._executor().map_array(self, *zip(*params, strict=True))
        ids = {}
        for i, job in zip(todo, submitted, strict=True):
            ids[str(jobs[i].run_dir)] = str(job.job_id)
            try:  # queued for this array task: the same sweep again reports it instead of submitting it again
                note = reserve(jobs[i].run_dir, str(job.job_id), stale_after(jobs[i]))
                if note:
                    print(note, file=sys.stderr, flush=True)
            except RunInUse:
                pass  # the task started already and holds its run directory itself
        record_submission(sweep_dir, ids)
        print(f"sweep {sweep_dir}: {len(todo)} of {len(jobs)} runs submitted as SLURM job array "
              f"{array_id(str(submitted[0].job_id))} (the others are complete, running or queued)"
              if len(todo) < len(jobs) else
              f"sweep {sweep_dir}: {len(todo)} runs submitted as SLURM job array {array_id(str(submitted[0].job_id))}",
              flush=True)
        if self.wait:
            for i, job in zip(todo, submitted, strict=True):
                results[i] = self._result(job, initial_job_idx + i, job_overrides[i])
        return results
