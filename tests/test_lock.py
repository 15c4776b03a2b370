"""One trainer per run directory (``run.lock``): a second launch on a live run trains nothing; a lock whose
holder is gone (its pid ended on this host, its heartbeat stale, its SLURM job over) is taken over with one
line; racing takers get one owner. A SIGKILLed holder taken over by the same command: tests/test_reliability.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, cli
from spatialprobe.run.lock import (
    LOCK_NAME,
    Holder,
    LockLost,
    RunInUse,
    RunLock,
    lock_guard,
    pid_start,
    read,
    reserve,
)


def plant(run_dir: Path, **fields) -> Holder:
    """A run.lock as another process would have left it."""
    now = time.time()
    holder = Holder(**{"state": "training", "host": socket.gethostname(), "pid": None, "pid_start": None,
                       "slurm_job": None, "since": now, "heartbeat": now, "token": "theirs", **fields})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(holder.__dict__))
    return holder


@pytest.fixture()
def fake_squeue(tmp_path, monkeypatch):
    """squeue on PATH answering from a file: ``<job> <STATE>`` lines; a job not listed is unknown to it."""
    bin_dir, states = tmp_path / "bin", tmp_path / "squeue-states"
    bin_dir.mkdir()
    states.write_text("")
    (bin_dir / "squeue").write_text(
        "#!/usr/bin/env bash\n"
        "while [ $# -gt 0 ]; do if [ \"$1\" = -j ]; then job=$2; fi; shift; done\n"
        f"state=$(awk -v j=\"$job\" '$1 == j {{print $2}}' {states})\n"
        "if [ -z \"$state\" ]; then echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; fi\n"
        "echo \"$state\"\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    return states


def test_the_lock_names_its_holder_beats_and_is_given_back(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    lock = RunLock(tmp_path / "run", heartbeat_s=0.1, stale_after_s=60)
    assert lock.acquire() is None
    try:
        first = read(tmp_path / "run")
        assert (first.state, first.host, first.pid, first.slurm_job) == ("training", socket.gethostname(),
                                                                           os.getpid(), "41_3")
        assert first.pid_start == pid_start(os.getpid())
        time.sleep(0.6)
        assert read(tmp_path / "run").heartbeat > first.heartbeat  # renewed by its thread
    finally:
        lock.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists() and not (tmp_path / "run" / "run.lock.d").exists()


def test_a_live_holder_elsewhere_refuses_and_a_stale_heartbeat_from_another_host_is_taken_over(tmp_path, fake_squeue):
    run = tmp_path / "run"
    plant(run, host="node-elsewhere", pid=4242)  # alive: its heartbeat is fresh
    with pytest.raises(RunInUse) as err:
        RunLock(run).acquire(heartbeat=False)
    assert str(err.value) == (f"{run} is being trained by pid 4242 on node-elsewhere (heartbeat 0 s ago); this launch "
                              "trains nothing: wait for it, or stop it (kill 4242 on node-elsewhere) and run the same "
                              "command again to resume")
    assert read(run).token == "theirs"  # untouched

    plant(run, host="node-elsewhere", pid=4242, heartbeat=time.time() - 3600)  # that node died an hour ago
    lock = RunLock(run, stale_after_s=600)
    note = lock.acquire(heartbeat=False)
    assert note == (f"spatialprobe: warning: {run}: took over run.lock of pid 4242 on node-elsewhere (heartbeat 60 min "
                    "ago): its heartbeat is 60 min old (lock.stale_after_s=600)")
    assert read(run).token == lock.holder.token and read(run).pid == os.getpid()
    lock.release()


def test_a_holder_whose_process_ended_on_this_host_is_taken_over(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    plant(tmp_path / "run", pid=ended.pid)
    note = RunLock(tmp_path / "run").acquire(heartbeat=False)
    assert note.endswith(f"took over run.lock of pid {ended.pid} on {socket.gethostname()} (heartbeat 0 s ago): "
                         f"pid {ended.pid} has ended")
    # a live pid that is not the process that took the lock (the pid was reused): gone too
    plant(tmp_path / "run2", pid=os.getppid(), pid_start="1")
    assert "has ended" in RunLock(tmp_path / "run2").acquire(heartbeat=False)
    # the live process that did take it: refused
    plant(tmp_path / "run3", pid=os.getppid(), pid_start=pid_start(os.getppid()))
    with pytest.raises(RunInUse, match=f"is being trained by pid {os.getppid()} on "):
        RunLock(tmp_path / "run3").acquire(heartbeat=False)


def test_a_lock_that_cannot_be_written_is_one_line(tmp_path):
    """A run directory that cannot be made (here its parent is a file; a full or read-only disk alike) is a
    UserError naming the lock file and the fix, not an OSError traceback; nothing is left held."""
    from spatialprobe.errors import UserError

    (tmp_path / "file").write_text("not a folder")
    lock = RunLock(tmp_path / "file" / "run")
    with pytest.raises(UserError, match=r"file/run/run\.lock: cannot write the run's lock \(.*\); free space"):
        lock.acquire(heartbeat=False)
    assert not lock.held


def test_slurm_jobs_hold_their_runs_while_squeue_lists_them(tmp_path, fake_squeue, monkeypatch):
    fake_squeue.write_text("77_1 PENDING\n77_2 RUNNING\n78 COMPLETED\n")
    queued = tmp_path / "queued"
    assert reserve(queued, "77_1") is None  # what the SLURM launcher writes for a submitted array task
    assert read(queued).state == "queued" and read(queued).slurm_job == "77_1" and read(queued).pid is None
    with pytest.raises(RunInUse, match=r"queued is queued as SLURM job 77_1 \(queued from .* ago\); this launch trains "
                                       r"nothing: wait for it, or stop it \(scancel 77_1\)"):
        RunLock(queued).acquire(heartbeat=False)
    # a training holder on another node: alive while its job runs, gone once squeue no longer lists it
    plant(tmp_path / "running", host="node7", pid=11, slurm_job="77_2")
    with pytest.raises(RunInUse, match="pid 11 on node7, SLURM job 77_2"):
        RunLock(tmp_path / "running").acquire(heartbeat=False)
    plant(tmp_path / "over", host="node7", pid=11, slurm_job="78")
    assert "SLURM job 78 is no longer pending or running (COMPLETED)" in RunLock(tmp_path / "over").acquire(False)
    plant(tmp_path / "purged", host="node7", pid=11, slurm_job="70_0", state="queued")
    assert "squeue no longer knows it" in RunLock(tmp_path / "purged").acquire(False)
    # the array task itself starting: its own reservation is its own, taken without a word
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    lock = RunLock(queued)
    assert lock.acquire(heartbeat=False) is None and read(queued).state == "training"
    # a requeued job whose earlier start was killed (a node failure): its lock is taken over
    plant(tmp_path / "requeued", host="node7", pid=11, slurm_job="77_1")
    assert "it is an earlier start of this SLURM job (77_1)" in RunLock(tmp_path / "requeued").acquire(False)


def test_racing_takers_of_a_stale_lock_get_exactly_one_owner(tmp_path):
    """Eight processes try to take the same stale lock at the same moment: one wins, seven are told it is in use."""
    run = tmp_path / "run"
    plant(run, host="node-elsewhere", pid=1, heartbeat=time.time() - 3600)
    go = tmp_path / "go"
    code = ("import sys, time, os; from pathlib import Path; from spatialprobe.run.lock import RunLock, RunInUse\n"
            f"while not Path({str(go)!r}).exists(): time.sleep(0.005)\n"
            f"lock = RunLock(Path({str(run)!r}))\n"
            "try:\n    lock.acquire(heartbeat=False); print('won', flush=True); time.sleep(3)\n"
            "except RunInUse: print('refused', flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    time.sleep(1.5)  # every one imported and waiting
    go.touch()
    outcomes = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outcomes == ["refused"] * 7 + ["won"], outcomes


def test_a_holder_whose_lock_was_taken_over_stops_at_the_next_batch(tmp_path):
    lock = RunLock(tmp_path / "run", heartbeat_s=0.1)
    lock.acquire()
    guard = lock_guard(lock)
    guard.on_train_batch_end(None, None, None, None, 0)  # still the holder: nothing happens
    plant(tmp_path / "run", host="node-elsewhere", pid=99)  # it was suspended; another launch took the run over
    deadline = time.time() + 10
    while lock.lost is None and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(LockLost, match="run.lock was taken over by pid 99 on node-elsewhere"):
        guard.on_train_batch_end(None, None, None, None, 1)
    lock.release()
    assert read(tmp_path / "run").token == "theirs"  # the new holder's lock stays


def test_a_second_launch_on_a_live_run_trains_nothing(fake_cifar10, env, tmp_path):
    """Two real processes on one run directory: the second says so in one line and leaves no trace; the first
    completes alone (one attempt, one metrics log)."""
    run = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=3", f"hydra.run.dir={run}"]
    first = subprocess.Popen([sys.executable, "-m", "spatialprobe.train", *args], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (run / LOCK_NAME).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1][-2000:]
        second = cli("spatialprobe.train", args, env, tmp_path)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1] == (
        f"spatialprobe: error: {run} is being trained by pid {first.pid} on {socket.gethostname()} "
        f"(heartbeat {second.stderr.split('(heartbeat ')[1].split(')')[0]}); this launch trains nothing: wait for it, "
        f"or stop it (kill {first.pid}) and run the same command again to resume")
    assert first.returncode == 0, err[-2000:]
    rec = json.loads((run / "result.json").read_text())
    assert rec["status"] == "complete" and rec["attempts"] == 1
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["attempt-1"]
    assert not (run / LOCK_NAME).exists()  # given back


def test_a_sweep_lists_a_job_running_elsewhere_and_goes_on(fake_cifar10, env, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "method=channel_shuffle", "k=0,1",
            f"hydra.sweep.dir={sweep_dir}"]
    busy = sweep_dir / "dataset=cifar10,k=1,method=channel_shuffle,model.width=0.0625,recipe.batch_size=16," \
                       "trainer.max_epochs=1,trainer.precision=32-true"
    plant(busy, host="node-elsewhere", pid=4242, slurm_job=None)
    dry = cli("spatialprobe.train", [*args, "dry_run=true"], env, tmp_path)
    assert "  [running: pid 4242 on node-elsewhere (heartbeat" in dry.stdout and "  [to do] " in dry.stdout
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    assert "  left alone, running: pid 4242 on node-elsewhere" in p.stdout
    assert "1 of 2 runs complete, 1 running elsewhere" in p.stdout
    assert "  running: pid 4242 on node-elsewhere" in p.stdout.split("1 of 2 runs complete")[1]
    assert not (busy / "result.json").exists() and read(busy).token == "theirs"
    # everything left is running elsewhere: nothing to launch, said in one line per run
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0 and "nothing to launch: 1 complete, 1 running (of 2 runs)" in p.stdout, p.stdout
    assert os.getpid() and signal  # (imports used by the helpers above)
