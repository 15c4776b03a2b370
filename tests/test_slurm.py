"""On a real SLURM cluster (CI starts the cluster of $SPATIALPROBE_SHARED/slurm/start_slurm.sh): a K-sweep through
hydra/launcher=slurm; a job preempted with SIGUSR2 that is requeued and continues from its checkpoint and its W&B
run; a sweep submitted with hydra.launcher.wait=false (and a sweeps/ script with WAIT=0) that returns at once,
reports its state when run again, and ends in its collect + figures job."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY
from fakedata import make_cifar_batches

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(1800),  # jobs wait for a shared cluster's queue
              pytest.mark.skipif(shutil.which("sbatch") is None, reason="SLURM not available here (no sbatch on PATH)")]

SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
         "hydra.launcher.timeout_min=30", "hydra.launcher.max_num_timeout=2"]


@pytest.fixture(scope="module", autouse=True)
def cluster_up():
    p = subprocess.run(["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0 or not p.stdout.strip():
        pytest.fail(f"sbatch exists but the cluster does not answer (sinfo: {p.stderr.strip()}); "
                    "start it with ../shared/slurm/start_slurm.sh")


def read(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def slurm_jobs(sweep_dir: Path) -> list[str]:
    """SLURM job ids of a sweep from submitit's folders: array tasks ("6_0", "6_1"), or a single job ("4")."""
    names = sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir())
    tasks = [n for n in names if "_" in n]
    return tasks or names


def test_k_sweep_on_slurm_gives_one_complete_record_per_k(fake_cifar10, env, tmp_path):
    from wandb_offline import run_contents

    sweep_dir = tmp_path / "sweeps" / "slurm_tiny"  # fresh per test: its own submitit folder
    args = ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY,
            "method=channel_shuffle", "k=0,1", f"hydra.sweep.dir={sweep_dir}", *SLURM, "logger=wandb"]
    p = subprocess.run([sys.executable, "-m", "spatialprobe.train", *args], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert "2 of 2 runs complete" in p.stdout
    records = [read(d) for d in sorted(sweep_dir.glob("*k=*")) if (d / "result.json").is_file()]
    assert sorted(r["k"] for r in records) == [0, 1]
    assert all(r["status"] == "complete" and r["method"] == "channel_shuffle" for r in records)
    assert all(r["host"] and r["test_top1"] is not None for r in records)
    for rec in records:  # W&B (offline) from every array task: each run its own metrics, in the sweep's group
        wb = run_contents(next(Path(rec["wandb_dir"]).glob("run-*.wandb")))
        assert wb["group"] == "slurm_tiny" and wb["config"]["k"] == rec["k"]
        assert wb["summary"]["test_top1"] == pytest.approx(rec["test_top1"], abs=1e-3)
    jobs = slurm_jobs(sweep_dir)
    assert len(jobs) == 2  # one SLURM array task per K (both fit the test cluster's 2 CPUs at once)
    deadline = time.time() + 120  # a task's result is in before its process has exited (wandb's own teardown)
    while True:
        sacct = subprocess.run(["sacct", "-n", "-X", "-j", jobs[0].split("_")[0], "-o", "State"],
                               capture_output=True, text=True).stdout.split()
        if not {"RUNNING", "COMPLETING"} & set(sacct) or time.time() > deadline:
            break
        time.sleep(2)
    assert sacct and set(sacct) == {"COMPLETED"}, sacct


@pytest.fixture(scope="module")
def bigger_cifar10(tmp_path_factory) -> Path:
    """600 training images: epochs long enough (a second or two) to signal a job in the middle of training."""
    return make_cifar_batches(tmp_path_factory.mktemp("cifar10big"), "cifar10", per_batch=120, test=64)


def test_usr2_preempted_job_is_requeued_and_continues_from_its_checkpoint(bigger_cifar10, env, tmp_path):
    """...and its W&B run: the same id, the second attempt's steps going on from the checkpoint's (logger=wandb,
    offline: one run file per attempt, synced into one run by `wandb sync`)."""
    from wandb_offline import run_contents

    epochs = 4
    sweep_dir = tmp_path / "sweeps" / "slurm_requeue"
    args = ["-m", "dataset=cifar10", f"dataset.root={bigger_cifar10}", "model=resnet18", *TINY,
            f"trainer.max_epochs={epochs}", "k=0", f"hydra.sweep.dir={sweep_dir}", *SLURM, "logger=wandb"]
    proc = subprocess.Popen([sys.executable, "-m", "spatialprobe.train", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        ckpt = None
        while time.time() < deadline and proc.poll() is None:
            found = list(sweep_dir.glob("*/checkpoints/last.ckpt"))
            if found:
                ckpt = found[0]
                break
            time.sleep(0.1)  # signal as soon as epoch 0 is saved: 3 epochs of training are left
        assert ckpt is not None, f"no checkpoint appeared; launcher exited with {proc.poll()}"
        (job_id,) = slurm_jobs(sweep_dir)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # what SLURM sends before preemption
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out[-3000:], err[-3000:])
    run_dir = ckpt.parent.parent
    rec = read(run_dir)
    assert rec["status"] == "complete" and rec["attempts"] == 2, rec.get("reason")
    assert rec["epochs"] == epochs

    # the second attempt resumed from the checkpoint written for the signal, at a batch boundary in training
    total = epochs * (600 // 16)  # training drops the last incomplete batch: 37 steps per epoch
    resumed = rec["resumed_from"]
    assert resumed["saved_for"] == "SIGUSR2" and 37 <= resumed["step"] < total, resumed

    def steps_logged(attempt: int) -> list[int]:
        """The training steps an attempt logged (train_loss_step: one row per step, log_every_n_steps=1)."""
        with open(run_dir / "logs" / f"attempt-{attempt}" / "metrics.csv") as fh:
            return [int(r["step"]) for r in csv.DictReader(fh) if r.get("train_loss_step")]

    first, second = steps_logged(1), steps_logged(2)
    # attempt 1 trained steps 0 .. S-1 (S = the checkpoint's global_step) and its metrics.csv is flushed on the
    # way out (Lightning finalizes the loggers on the exception submitit's requeue raises); the row of step S-1
    # is the one missing: the signal is acted on in that step's end hook, before Lightning logs the step
    assert first == list(range(resumed["step"] - 1)), (first[-3:], resumed)
    assert second == list(range(resumed["step"], total)), second[:3]  # then S .. the end: none lost, none twice
    assert rec["steps"] == total
    log = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob(f"{job_id}/*_log.err"))
    assert "USR2" in log and "preempted" in log

    # W&B: one run, two attempts; the second's steps start where the checkpoint it resumed from left off
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and {f.name for f in files} == {f"run-{rec['wandb_id']}.wandb"}, files
    first, second = (run_contents(f)["history"] for f in files)
    resumed_at = min(int(r["trainer/global_step"]) for r in second if "trainer/global_step" in r)
    assert resumed_at >= 600 // 16  # after epoch 0: not from step 0
    for rows in (first, second):  # W&B's own step is the training step: the attempts line up in one run
        assert all(r["_step"] == r["trainer/global_step"] for r in rows if "trainer/global_step" in r)
    if first:
        assert min(r["_step"] for r in second) >= max(r["_step"] for r in first)
    assert max(r["_step"] for r in second) == rec["steps"]


def wait_for(job: str, timeout: float = 600) -> str:
    """The final state of SLURM job ``job`` (sacct), once it has one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = subprocess.run(["sacct", "-n", "-X", "-j", job, "-o", "State"], capture_output=True,
                                text=True).stdout.split()
        if states and not {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "CONFIGURING"} & set(states):
            return states[0]
        time.sleep(2)
    raise AssertionError(f"SLURM job {job} did not end within {timeout} s")


def sweep_jobs(tmp_path) -> list[str]:
    """Every SLURM job id the test cluster knows of this test (by its submitit folders)."""
    return sorted(p.name for p in tmp_path.rglob(".submitit/*") if p.is_dir())


@pytest.mark.slow  # half a minute of queue waits: CI runs it with make test-slow
def test_submit_and_return_then_the_same_command_reports_the_state(fake_cifar10, env, tmp_path):
    """hydra.launcher.wait=false: the command submits the array and the collect + figures job (afterany on the
    array) and returns while the array runs; the same command again lists the runs' states and submits nothing;
    the figures job then writes results.csv and the figures."""
    sweep_dir = tmp_path / "sweeps" / "detached"
    args = ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY, "trainer.max_epochs=3",
            "method=channel_shuffle", "k=0,1", f"hydra.sweep.dir={sweep_dir}", *SLURM, "hydra.launcher.wait=false"]
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "spatialprobe.train", *args], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    submitted = json.loads((sweep_dir / "submitted.json").read_text())
    (array,), figures = submitted["arrays"], submitted["figures_job"]
    assert sorted(submitted["tasks"].values()) == [f"{array}_0", f"{array}_1"]
    assert f"submitted as SLURM job array {array}: 2 queued; collect + figures: SLURM job {figures}" in p.stdout
    assert "this shell may close now" in p.stdout
    dependency = subprocess.run(["scontrol", "show", "job", figures], capture_output=True, text=True).stdout
    assert f"Dependency=afterany:{array}" in dependency, dependency
    states = subprocess.run(["squeue", "-h", "-j", f"{array},{figures}", "-o", "%T"], capture_output=True,
                            text=True).stdout.split()
    assert "PENDING" in states, states  # it returned before the sweep ended: at least the figures job waits

    again = subprocess.run([sys.executable, "-m", "spatialprobe.train", *args], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, (again.stdout[-3000:], again.stderr[-3000:])
    out = again.stdout
    assert "nothing to launch" in out or "nothing submitted" in out, out
    for run_dir, job in submitted["tasks"].items():  # each run: queued for its task, or running in it, or done
        assert (f"SLURM job {job}" in out and f": {run_dir}" in out) or json.loads(
            (Path(run_dir) / "result.json").read_text())["status"] == "complete", out
    assert json.loads((sweep_dir / "submitted.json").read_text()) == submitted  # nothing new submitted
    assert set(sweep_jobs(tmp_path)) - {array} == {f"{array}_0", f"{array}_1", figures}  # (the array's own folder)

    assert wait_for(figures) == "COMPLETED"
    assert all(json.loads((Path(d) / "result.json").read_text())["status"] == "complete" for d in submitted["tasks"])
    with open(sweep_dir / "results.csv") as fh:
        assert sorted(int(r["k"]) for r in csv.DictReader(fh)) == [0, 1]
    assert (sweep_dir / "figures" / "kcurve_resnet18_cifar10.png").stat().st_size > 0
    print(f"submit and return: {took:.1f} s")


@pytest.mark.slow  # half a minute of queue waits: CI runs it with make test-slow
def test_a_sweeps_script_with_wait_0_submits_its_sweeps_and_the_rest_of_the_script(fake_cifar10, env, tmp_path):
    """sweeps/lib.sh with LAUNCHER=slurm WAIT=0: every sweep as an array, the rest of the script (here: figures)
    as one SLURM job after them; the script returns at once. A script of the same shape as sweeps/*.sh."""
    from conftest import REPO

    (tmp_path / "repo" / "sweeps").mkdir(parents=True)
    shutil.copy(REPO / "sweeps" / "lib.sh", tmp_path / "repo" / "sweeps" / "lib.sh")
    script = tmp_path / "repo" / "sweeps" / "tiny.sh"
    script.write_text('source "$(dirname "$0")/lib.sh"\n'
                      f'sweep dataset=cifar10 dataset.root={fake_cifar10} model=resnet18 {" ".join(TINY)} '
                      f'method=channel_shuffle k=0,1 hydra.sweep.dir=$RUNS/sweeps/tiny "$@"\n'
                      'figures tiny\n'
                      'if [ "${DRY_RUN:-0}" != 1 ]; then echo "after the sweeps: $(ls $RUNS/sweeps/tiny/figures | wc -l) files"; fi\n')
    runs = tmp_path / "repo" / "runs"
    run_env = dict(env, LAUNCHER="slurm", WAIT="0", PY=sys.executable, SPATIALPROBE_RUNS=str(runs))
    p = subprocess.run(["bash", str(script), *SLURM[1:]], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    (array,) = json.loads((runs / "sweeps" / "tiny" / "submitted.json").read_text())["arrays"]
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("tiny.sh: sweeps submitted"))
    after = line.split("SLURM job ")[-1].split(" ")[0]
    assert f"(SLURM job arrays {array})" in line and "this shell may close now" in line, line
    assert f"Dependency=afterany:{array}" in subprocess.run(["scontrol", "show", "job", after], capture_output=True,
                                                            text=True).stdout
    assert not (runs / "sweeps" / "tiny" / "results.csv").exists()  # the figures wait for the array
    assert wait_for(after) == "COMPLETED"
    log = (runs / "logs" / f"tiny-after-sweeps-{after}.out").read_text()
    assert "+ (submitted before) python -m spatialprobe.train" in log and "after the sweeps: " in log, log
    with open(runs / "sweeps" / "tiny" / "results.csv") as fh:
        assert sorted(int(r["k"]) for r in csv.DictReader(fh)) == [0, 1]
