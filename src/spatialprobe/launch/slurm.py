"""A sweep on SLURM that does not need the submitting shell: submit, then return (``hydra.launcher.wait=false``).

``hydra/launcher=slurm`` (the launcher in ``hydra_plugins.spatialprobe_launcher``) submits only the runs of
a sweep that are to do (not complete, not running and not queued already, :func:`spatialprobe.launch.sweep.
job_state`), as one SLURM job array, and marks each run directory as queued for its array task
(``run.lock``, :mod:`spatialprobe.run.lock`). With ``wait=true`` (the default) it then waits for the array,
as Hydra's submitit launcher does. With ``wait=false`` it returns at once: :func:`submit_figures_job`
submits the sweep's collect + figures step as a SLURM job that starts when the array has ended
(``--dependency=afterany:<array>``; ``figures_job=false`` leaves it out, as ``sweeps/lib.sh`` does, which
submits the rest of its script instead). The same command again, while the array waits or runs, lists
the runs' states and submits nothing new.

The sweep directory keeps what was submitted in ``submitted.json`` (array jobs, the figures job), so that
the state of the figures job is reported too. ``$SPATIALPROBE_SUBMITTED``, when set, names a file to which
every array job id is appended (one a line): ``sweeps/lib.sh`` makes its dependent job wait for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spatialprobe.run.records import read_json, write_json_atomic

SUBMITTED = "submitted.json"
#: the array jobs this process submitted (the launcher appends, the sweep's end reads them)
ARRAYS: list[str] = []


def is_slurm(config: DictConfig) -> bool:
    return str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "").endswith("SlurmLauncher")


def waits(config: DictConfig) -> bool:
    """Whether the sweep command waits for its SLURM jobs (``hydra.launcher.wait``; always, for other launchers)."""
    return not is_slurm(config) or bool(OmegaConf.select(config, "hydra.launcher.wait", default=True))


def array_id(job_id: str) -> str:
    """``12`` of an array task ``12_3`` (a plain job id stays as it is)."""
    return str(job_id).split("_", 1)[0]


def record_submission(sweep_dir: Path, jobs: dict[str, str]) -> None:
    """``jobs`` (run dir -> SLURM job id) into the sweep's ``submitted.json`` and ``$SPATIALPROBE_SUBMITTED``."""
    arrays = sorted({array_id(j) for j in jobs.values()}, key=lambda a: (len(a), a))
    ARRAYS.extend(a for a in arrays if a not in ARRAYS)
    path = Path(sweep_dir) / SUBMITTED
    state = read_json(path) or {}
    state.setdefault("arrays", [])
    state["arrays"] += [a for a in arrays if a not in state["arrays"]]
    state.setdefault("tasks", {}).update(jobs)
    state["submitted"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(path, state)
    listing = os.environ.get("SPATIALPROBE_SUBMITTED")
    if listing:
        with open(listing, "a") as fh:
            fh.writelines(f"{a}\n" for a in arrays)


def collect_and_plot(sweep_dir: str) -> str:
    """The figures job: ``collect`` the sweep's records into ``results.csv``, then ``plot`` its figures."""
    table = Path(sweep_dir) / "results.csv"
    for args in (["spatialprobe.collect", sweep_dir, "-o", str(table)],
                 ["spatialprobe.plot", str(table), "-o", str(Path(sweep_dir) / "figures")]):
        p = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
        print(p.stdout, end="", flush=True)
        print(p.stderr, end="", file=sys.stderr, flush=True)
        if p.returncode != 0:
            raise RuntimeError(f"python -m {' '.join(args)} ended with exit status {p.returncode}")
    return str(Path(sweep_dir) / "figures")


def submit_figures_job(config: DictConfig, arrays: list[str]) -> str:
    """Submit :func:`collect_and_plot` of the sweep as a SLURM job after ``arrays`` end (afterany: whatever
    their outcome); its partition, account, qos and setup lines are the sweep's. Returns its job id."""
    import submitit

    sweep_dir = str(config.hydra.sweep.dir)
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    executor = submitit.AutoExecutor(folder=str(launcher.get("submitit_folder") or f"{sweep_dir}/.submitit/%j"),
                                     cluster="slurm")
    extra: dict[str, Any] = {k: launcher[k] for k in ("partition", "account", "qos") if launcher.get(k)}
    executor.update_parameters(name="spatialprobe-figures", timeout_min=60, nodes=1, tasks_per_node=1,
                               cpus_per_task=1, mem_gb=4, slurm_setup=list(launcher.get("setup") or []),
                               slurm_dependency="afterany:" + ":".join(arrays),
                               **{f"slurm_{k}": v for k, v in extra.items()})
    job = executor.submit(collect_and_plot, sweep_dir)
    path = Path(sweep_dir) / SUBMITTED
    state = read_json(path) or {}
    state["figures_job"] = str(job.job_id)
    write_json_atomic(path, state)
    return str(job.job_id)


def figures_job_state(sweep_dir: Path) -> str | None:
    """``figures: SLURM job 13 (PENDING)`` for the sweep's last figures job, or None."""
    from spatialprobe.run.lock import slurm_state

    job = (read_json(Path(sweep_dir) / SUBMITTED) or {}).get("figures_job")
    if not job:
        return None
    state = slurm_state(str(job))
    if state == "":
        state = "ended"
    return f"collect + figures: SLURM job {job}" + (f" ({state})" if state else "")
