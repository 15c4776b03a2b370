"""No result is ever lost: kills, signals, crashes, divergence, unusable output directories.

Kills and signals hit real ``python -m spatialprobe.train`` processes (the process is the point);
the reference run, crashes, divergence and sweeps call the same entry point in this process.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY, cli
from spatialprobe.run.callbacks import AtomicCheckpointIO, CheckpointWriteError, ResumableCheckpoint
from spatialprobe.run.lock import read as read_lock
from spatialprobe.run.records import write_json_atomic

# deterministic, resumable, and long enough to be interrupted: 10 steps per epoch, last.ckpt every 3
RESUMABLE = [*TINY, "recipe=cpu", "trainer.max_epochs=3", "trainer.deterministic=true",
             "checkpoint.every_n_steps=3"]


def det_env(env: dict) -> dict:
    return dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def start(args, env, cwd, run_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spatialprobe.train", *args, f"hydra.run.dir={run_dir}"],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(args, env, cwd, run_dir) -> subprocess.CompletedProcess:
    p = start(args, env, cwd, run_dir)
    out, err = p.communicate(timeout=600)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def record(run_dir) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def weights(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


RESULT_KEYS = ("steps", "epochs", "val_top1_final", "val_top1_best", "test_top1_final", "test_loss_final",
               "train_loss_final")


def in_process(args, env, cwd, run_dir) -> subprocess.CompletedProcess:
    return cli("spatialprobe.train", [*args, f"hydra.run.dir={run_dir}"], env, cwd)


@pytest.fixture(scope="module")
def uninterrupted(fake_cifar10, tmp_path_factory):
    """The reference: trained in this process (one thread, as the killed processes)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    env = det_env(dict(os.environ, SPATIALPROBE_CACHE=str(tmp / "cache"), WANDB_MODE="offline"))
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *RESUMABLE]
    p = in_process(args, env, tmp, tmp / "run")
    assert p.returncode == 0, p.stderr[-3000:]
    return args, env, tmp / "run"


def assert_same_result(run_dir, reference):
    got, want = record(run_dir), record(reference)
    assert got["status"] == "complete"
    assert {k: got[k] for k in RESULT_KEYS} == {k: want[k] for k in RESULT_KEYS}
    a, b = weights(run_dir), weights(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_mid_epoch_then_same_command_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    args, env, reference = uninterrupted
    run_dir = tmp_path / "run"
    killed = finish([*args, "debug.kill_at_step=14"], env, tmp_path, run_dir)  # last.ckpt is from step 12
    assert killed.returncode == -signal.SIGKILL
    assert record(run_dir)["status"] == "running"  # the record never claims what did not happen
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    holder = read_lock(run_dir)  # the SIGKILLed process could not give its run.lock back
    assert holder.pid != os.getpid() and holder.host == socket.gethostname()
    resumed = in_process([*args, "debug.kill_at_step=14"], env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    took_over = [ln for ln in resumed.stderr.splitlines() if "run.lock" in ln]
    assert took_over == [f"spatialprobe: warning: {run_dir}: took over run.lock of pid {holder.pid} on {holder.host} "
                         f"{took_over[0].split(f'on {holder.host} ')[1].split(':')[0]}: pid {holder.pid} has ended"]
    assert read_lock(run_dir) is None  # given back at the end
    assert record(run_dir)["attempts"] == 2
    assert_same_result(run_dir, reference)
    # the second attempt started where the first stopped, it did not train from step 0
    second = (run_dir / "logs" / "attempt-2" / "metrics.csv").read_text().splitlines()
    steps = [int(row.split(",")[header_index(second, "step")]) for row in second[1:]]
    assert min(steps) >= 12


def header_index(lines, name):
    return lines[0].split(",").index(name)


def test_sigkill_at_a_random_moment_then_resume_equals_uninterrupted(uninterrupted, tmp_path):
    args, env, reference = uninterrupted
    run_dir = tmp_path / "run"
    p = start(args, env, tmp_path, run_dir)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.15))  # somewhere in the 27 steps, 3 validations and test still to come
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL  # killed mid-run, not finished before the signal
    assert record(run_dir)["status"] == "running" and record(run_dir)["attempts"] == 1
    resumed = in_process(args, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert record(run_dir)["attempts"] == 2
    assert_same_result(run_dir, reference)


def steps_logged(run_dir, attempt: int) -> list[int]:
    lines = (run_dir / "logs" / f"attempt-{attempt}" / "metrics.csv").read_text().splitlines()
    return [int(row.split(",")[header_index(lines, "step")]) for row in lines[1:]]


# SIGKILL where no training step is running (debug.kill_during): the checkpoint on disk when it strikes, by hand:
# 10 steps per epoch, last.ckpt every 3 steps and at every epoch end, 3 epochs (30 steps)
KILL_MOMENTS = {
    "validation": 9,    # after the first validation batch of epoch 0: the periodic checkpoint of step 9
    "epoch_end": 9,     # at the end of epoch 0, its validation done, before its epoch-end checkpoint: step 9 again
    "epoch_start": 10,  # at the start of epoch 1, before its first batch: epoch 0's checkpoint, step 10
    "test": 30,         # in the final test: training is over, last.ckpt is the final network
}


@pytest.mark.parametrize("moment", list(KILL_MOMENTS))
def test_sigkill_in_validation_at_an_epoch_boundary_or_in_the_final_test_then_resume(moment, uninterrupted, tmp_path):
    args, env, reference = uninterrupted
    run_dir = tmp_path / "run"
    killed = finish([*args, f"debug.kill_during={moment}"], env, tmp_path, run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert record(run_dir)["status"] == "running" and (run_dir / f".debug-kill-{moment}").is_file()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == KILL_MOMENTS[moment]
    resumed = in_process([*args, f"debug.kill_during={moment}"], env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert record(run_dir)["attempts"] == 2
    assert record(run_dir)["resumed_from"]["step"] == KILL_MOMENTS[moment]  # the record names where it went on
    assert_same_result(run_dir, reference)
    second = steps_logged(run_dir, 2)
    assert min(second) >= KILL_MOMENTS[moment]  # not trained again from an earlier step


def test_sigterm_saves_and_stops_with_a_failed_record_then_resumes(uninterrupted, tmp_path):
    args, env, reference = uninterrupted
    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        p = start(args, env, tmp_path, run_dir)
        deadline = time.time() + 300
        while not (run_dir / "checkpoints" / "last.ckpt").exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)  # right after the first periodic checkpoint (step 3 of 30)
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            break
        # exit 0, a complete run: the 30 steps ended before this process saw the checkpoint and signalled (a
        # starved test process on a loaded machine); the signal never reached training, so try once more
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    rec = record(run_dir)
    assert rec["status"] == "failed" and "SIGTERM" in rec["reason"] and "resume" in rec["reason"]
    # the checkpoint on disk was written for the signal, at the batch boundary after it arrived
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["saved_for"] == "SIGTERM" and 3 <= ckpt["global_step"] < 30
    resumed = in_process(args, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert record(run_dir)["resumed_from"] == {"file": "last.ckpt", "step": ckpt["global_step"], "steps_lost": 0,
                                               "epoch": ckpt["epoch"], "saved_for": "SIGTERM"}
    second = (run_dir / "logs" / "attempt-2" / "metrics.csv").read_text().splitlines()
    assert min(int(row.split(",")[header_index(second, "step")]) for row in second[1:]) >= ckpt["global_step"]
    assert_same_result(run_dir, reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR2, marks=pytest.mark.slow)])  # (time budget)
def test_a_hung_step_still_stops_after_the_signal_deadline(fake_cifar10, tmp_path, env, sig):
    """Training step 5 never returns (debug.hang_at_step=4): after the signal, no batch boundary comes,
    and 3 s later the watchdog writes the failed record, saying why, and ends the process."""
    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=3",
            "checkpoint.every_n_steps=2", "debug.hang_at_step=4", "checkpoint.signal_deadline_s=3"]
    p = start(args, env, tmp_path, run_dir)
    deadline = time.time() + 300
    while not (run_dir / ".debug-hang").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()[1][-2000:]
    time.sleep(1.0)  # the step is hung now
    sent = time.monotonic()
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert p.returncode == 128 + sig, err[-2000:]
    assert 3.0 <= waited < 30, waited  # not before the deadline, and not never
    rec = record(run_dir)
    assert rec["status"] == "failed"
    assert sig.name in rec["reason"] and "no batch ended within 3 s" in rec["reason"] and "step 4" in rec["reason"]
    assert [ln for ln in err.splitlines() if ln.startswith("spatialprobe: error:")] == [f"spatialprobe: error: {rec['reason']}"]
    # the checkpoint of step 4 is intact, and the same command resumes from it
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 4
    resumed = in_process(args, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert record(run_dir)["status"] == "complete" and record(run_dir)["attempts"] == 2


def test_a_signal_during_a_long_validation_is_not_taken_for_a_hang():
    """The deadline counts from the last batch that ended, of any kind (a long validation keeps beating)."""
    from spatialprobe.run.callbacks import SignalDeadline

    fired = []

    watch = SignalDeadline(0.6, [signal.SIGUSR1], fired.append)
    watch._expire = fired.append  # record instead of ending this process
    previous = signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        watch.start()
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(10):  # 1.5 s of batches ending every 0.15 s: no expiry
            time.sleep(0.15)
            watch.beat()
        assert fired == []
        time.sleep(1.2)  # then nothing ends: it expires
        assert fired == [signal.SIGUSR1]
    finally:
        watch.stop()
        signal.signal(signal.SIGUSR1, previous)


def test_checkpoint_every_minutes_and_every_n_steps():
    """ResumableCheckpoint on a fake clock: last.ckpt when the minutes are up or every n steps."""
    class Trainer:
        global_step = 0
        callback_metrics: dict = {}

        def __init__(self, callback):
            self.saved, self.callback = [], callback

        def save_checkpoint(self, path):
            ckpt = {}
            self.callback.on_save_checkpoint(self, None, ckpt)
            self.saved.append((self.global_step, ckpt["saved_for"]))

    now = [1000.0]
    for kwargs, expected in (({"every_minutes": 0.3}, [3, 6, 9]), ({"every_n_steps": 4}, [4, 8]),
                             ({}, [])):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("spatialprobe.run.callbacks.time.monotonic", lambda: now[0])
            cb = ResumableCheckpoint("last.ckpt", on_signal=False, **kwargs)
            trainer = Trainer(cb)
            for step in range(1, 10):  # 8 s per step on the fake clock: 18 s are up after 3 steps
                now[0] += 8.0
                trainer.global_step = step
                cb.on_train_batch_end(trainer, None, None, None, step)
        assert trainer.saved == [(s, "schedule") for s in expected], kwargs
    trainer.save_checkpoint("x")  # Lightning's own saves (epoch end, best) carry no reason
    assert trainer.saved[-1] == (9, None)


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM])
def test_a_signal_saves_last_ckpt_at_the_next_batch_boundary_then_goes_to_the_previous_handler(sig, tmp_path):
    """docs/configuration.md: last.ckpt "at the next batch boundary after SIGUSR2 / SIGTERM", saying why
    (``saved_for``), and the signal then handed on (to submitit's handler, which requeues the job). Nothing
    is saved in the middle of the step the signal interrupts; the handlers are put back."""
    handed = []

    class Trainer:
        global_step = 0
        callback_metrics: dict = {}

        def __init__(self):
            self.saved = []

        def save_checkpoint(self, path):
            ckpt = {}
            cb.on_save_checkpoint(self, None, ckpt)
            self.saved.append((self.global_step, ckpt["saved_for"], handed[:]))

    def submitit(signum, frame):
        handed.append(signum)

    previous = signal.signal(sig, submitit)
    try:
        cb = ResumableCheckpoint(tmp_path / "last.ckpt", every_n_steps=100, deadline_s=None)
        trainer = Trainer()
        cb.on_fit_start(trainer, None)
        assert signal.getsignal(sig) == cb._handler
        for step in (1, 2, 3):
            trainer.global_step = step
            if step == 3:
                os.kill(os.getpid(), sig)  # arrives while step 3 runs
                assert trainer.saved == [] and handed == []  # nothing happens inside the step
            cb.on_train_batch_end(trainer, None, None, None, step - 1)
        assert trainer.saved == [(3, sig.name, [])]  # saved first, for the signal, at the end of step 3
        assert handed == [sig] and signal.getsignal(sig) is submitit  # then handed on, the handler restored
    finally:
        signal.signal(sig, previous)


def test_injected_crash_fails_the_record_and_the_rerun_completes(fake_cifar10, env, tmp_path):
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=2", "debug.crash_at_epoch=0"]
    run_dir = tmp_path / "run"
    p = in_process(args, env, tmp_path, run_dir)
    assert p.returncode != 0
    rec = record(run_dir)
    assert rec["status"] == "failed" and "InjectedFault" in rec["reason"]
    p = in_process(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-2000:]
    assert record(run_dir)["status"] == "complete" and record(run_dir)["attempts"] == 2


def test_sweep_with_injected_failures_reports_them_and_the_rerun_redoes_only_those(fake_cifar10, env, tmp_path):
    """Jobs #1 and #2 of a 4-job K-sweep crash once: the sweep goes on, names them, exits 1; the same
    command again trains only those two and leaves the complete records untouched."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY,
            "method=spatial_shuffle", "k=0,1,2,3", "debug.crash_at_epoch=0", "debug.only_jobs=[1,2]",
            f"hydra.sweep.dir={sweep_dir}"]
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 1, (p.stdout[-3000:], p.stderr[-3000:])
    summary = p.stdout[p.stdout.index("2 of 4 runs complete"):]  # the sweep's last words
    assert summary.count("InjectedFault") == 2, summary
    by_k = {record(d)["k"]: d for d in sweep_dir.iterdir() if (d / "result.json").is_file()}
    first = {k: record(d) for k, d in by_k.items()}
    assert {k: r["status"] for k, r in first.items()} == {0: "complete", 1: "failed", 2: "failed", 3: "complete"}
    assert all(f"failed: {by_k[k]}" in summary for k in (1, 2))
    assert all("InjectedFault" in first[k]["reason"] for k in (1, 2))

    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert "4 of 4 runs complete" in p.stdout and p.stdout.count("skipped, already complete") == 2
    again = {k: record(d) for k, d in by_k.items()}
    assert again[0] == first[0] and again[3] == first[3]  # not touched
    assert all(again[k]["status"] == "complete" and again[k]["attempts"] == 2 for k in (1, 2))


def test_divergence_stops_with_a_clear_message_and_a_failed_record(fake_cifar10, env, tmp_path):
    run_dir = tmp_path / "run"
    p = in_process(["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "recipe.lr=1e12",
                    "recipe.schedule=constant"], env, tmp_path, run_dir)
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("spatialprobe: error: loss became") and "recipe.lr" in last
    rec = record(run_dir)
    assert rec["status"] == "failed" and "loss became" in rec["reason"] and rec.get("test_top1") is None


@pytest.mark.parametrize(
    "extra,env_extra,needle",
    [
        (["hydra.run.dir=/dev/null/run"], {}, "is not writable"),
        ([], {"SPATIALPROBE_MIN_FREE_MB": str(10**12)}, "MiB free"),
    ],
)
def test_unusable_output_directory_is_reported_before_training(fake_cifar10, env, tmp_path, extra, env_extra, needle):
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, *extra]
    if not extra:
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    p = cli("spatialprobe.train", args, {**env, **env_extra}, tmp_path)
    assert p.returncode == 2 and needle in p.stderr.strip().splitlines()[-1], p.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"v": torch.ones(3)}, path)

    def torn_save(obj, fh, *a, **k):
        fh.write(b"half a checkpoint")
        raise OSError("disk went away")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(CheckpointWriteError, match="could not write .*last.ckpt: disk went away; last.ckpt in .* intact"):
        io.save_checkpoint({"v": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["v"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_record_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"status": "running"})

    def torn_dump(obj, fh, **k):
        fh.write('{"status": "compl')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", torn_dump)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"status": "complete"})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


# ---- damaged checkpoints: the newest readable one, said in one line; none readable: one line, restart on request

def crashed_in_epoch_1(args, env, tmp_path) -> tuple:
    """A run that crashed at the end of epoch 1 (of 3), in this process: its checkpoints and the steps they hold."""
    run_dir = tmp_path / "run"
    p = in_process([*args, "debug.crash_at_epoch=1"], env, tmp_path, run_dir)
    assert p.returncode != 0 and record(run_dir)["status"] == "failed"
    steps = record(run_dir)["checkpoint_steps"]
    assert set(steps) == {"last.ckpt", "previous.ckpt", "best.ckpt"} and steps["previous.ckpt"] < steps["last.ckpt"]
    for name, step in steps.items():  # the record's steps are the files' own
        assert torch.load(run_dir / "checkpoints" / name, weights_only=True)["global_step"] == step
    return run_dir, steps


def test_a_truncated_last_ckpt_resumes_from_the_previous_one_and_says_what_it_cost(uninterrupted, tmp_path):
    """last.ckpt cut short (a copy between file systems that broke off): the run resumes from previous.ckpt, one
    line names both and the training steps lost, and the result equals an uninterrupted run's bit for bit."""
    args, env, reference = uninterrupted
    run_dir, steps = crashed_in_epoch_1(args, env, tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    resumed = in_process(args, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = [ln for ln in resumed.stderr.splitlines() if "checkpoints" in ln]
    lost = steps["last.ckpt"] - steps["previous.ckpt"]
    assert lines == [f"spatialprobe: warning: {run_dir / 'checkpoints'}: passed over last.ckpt: unreadable (empty or "
                     f"truncated); resuming from previous.ckpt at step {steps['previous.ckpt']}: {lost} training step(s) "
                     f"lost (the newest checkpoint was at step {steps['last.ckpt']})"], resumed.stderr[-2000:]
    rec = record(run_dir)
    assert {k: rec["resumed_from"][k] for k in ("file", "step", "steps_lost")} == {
        "file": "previous.ckpt", "step": steps["previous.ckpt"], "steps_lost": lost}
    assert rec["attempts"] == 2 and (run_dir / "checkpoints" / "last.ckpt.unreadable").is_file()
    second = (run_dir / "logs" / "attempt-2" / "metrics.csv").read_text().splitlines()
    assert min(int(row.split(",")[header_index(second, "step")]) for row in second[1:]) >= steps["previous.ckpt"]
    assert_same_result(run_dir, reference)


def test_no_readable_checkpoint_is_one_line_and_a_restart_only_on_request(uninterrupted, tmp_path):
    args, env, reference = uninterrupted
    run_dir, _ = crashed_in_epoch_1(args, env, tmp_path)
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    damaged = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    p = in_process(args, env, tmp_path, run_dir)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    line = p.stderr.strip().splitlines()[-1]
    assert line == (f"spatialprobe: error: {run_dir / 'checkpoints'}: no checkpoint of this unfinished run loads "
                    "(last.ckpt: unreadable (truncated: the end of the file is missing); previous.ckpt: unreadable "
                    "(truncated: the end of the file is missing); best.ckpt: unreadable (truncated: the end of the file "
                    "is missing)); nothing was trained. To train it again from step 0, re-run with "
                    "checkpoint.on_unreadable=restart")
    rec = record(run_dir)
    assert rec["status"] == "failed" and rec["reason"] == line.removeprefix("spatialprobe: error: ")
    assert rec["attempts"] == 1  # no new attempt: nothing was trained, no silent restart
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == damaged
    p = in_process([*args, "checkpoint.on_unreadable=restart"], env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [ln for ln in p.stderr.splitlines() if "on_unreadable" in ln] == [
        f"spatialprobe: warning: {run_dir / 'checkpoints'}: no checkpoint loads (last.ckpt: unreadable (truncated: the "
        "end of the file is missing); previous.ckpt: unreadable (truncated: the end of the file is missing); best.ckpt: "
        "unreadable (truncated: the end of the file is missing)); training again from step 0 as "
        "checkpoint.on_unreadable=restart asks (kept: last.ckpt.unreadable, previous.ckpt.unreadable, "
        "best.ckpt.unreadable)"]
    assert {f"{n}.unreadable" for n in ("last.ckpt", "previous.ckpt", "best.ckpt")} <= {
        p.name for p in (run_dir / "checkpoints").iterdir()}
    assert_same_result(run_dir, reference)  # from step 0 with the same streams: the uninterrupted run


# ---- a full disk while a checkpoint is written

class FillsUp:
    """A file that takes ``room`` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def disk_fills_at_write(monkeypatch, n: int, also_records: bool = False) -> list:
    """Checkpoint writes 1..n-1 succeed, write n and all later ones fail half-way with ENOSPC (torch.save reports
    it the way it does on a real full disk); ``also_records``: then every record write fails too."""
    real_save, real_json = torch.save, write_json_atomic
    writes: list = []

    def save(obj, fh, *a, **k):
        writes.append(obj.get("global_step"))
        return real_save(obj, FillsUp(fh, 2000) if len(writes) >= n else fh, *a, **k)

    def json_write(path, obj):
        if also_records and len(writes) >= n:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_json(path, obj)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr("spatialprobe.run.records.write_json_atomic", json_write)
    return writes


def test_a_full_disk_during_a_checkpoint_is_one_line_a_failed_record_and_the_previous_checkpoint_intact(
        uninterrupted, tmp_path, monkeypatch):
    args, env, reference = uninterrupted
    run_dir = tmp_path / "run"
    writes = disk_fills_at_write(monkeypatch, 3)  # steps 3 and 6 written, the one at step 9 fails
    p = in_process(args, env, tmp_path, run_dir)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    line = p.stderr.strip().splitlines()[-1]
    ckpts = run_dir / "checkpoints"
    assert line == (f"spatialprobe: error: could not write {ckpts / 'last.ckpt'}: No space left on device (ENOSPC); "
                    f"last.ckpt, previous.ckpt in {ckpts} intact; free space (or fix the file system) and re-run the "
                    "same command to resume")
    assert writes == [3, 6, 9]
    rec = record(run_dir)
    assert rec["status"] == "failed" and rec["reason"] == "CheckpointWriteError: " + line.removeprefix("spatialprobe: error: ")
    assert rec["checkpoint_steps"] == {"last.ckpt": 6, "previous.ckpt": 3}
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 6  # the previous one, intact
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt", "previous.ckpt"]  # no half-written file left
    monkeypatch.undo()  # space freed: the same command resumes and ends as if nothing had happened
    resumed = in_process(args, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(run_dir, reference)


def test_a_full_disk_that_refuses_the_record_too_is_still_one_line(fake_cifar10, env, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    disk_fills_at_write(monkeypatch, 1, also_records=True)
    p = in_process(["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY], env, tmp_path, run_dir)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("spatialprobe: error:")]
    assert len(lines) == 1 and lines[0] == p.stderr.strip().splitlines()[-1]
    assert "No space left on device (ENOSPC)" in lines[0]
    assert lines[0].endswith(f"; the record {run_dir / 'result.json'} could not be updated either")
    assert record(run_dir)["status"] == "running"  # its last write before the disk filled


def _mount_tmpfs(path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small or read-only file system needs root")
def test_a_real_full_disk_and_a_real_read_only_mount(fake_cifar10, env, tmp_path):
    """The same on real file systems (where this machine lets the test mount them): a 1 MiB tmpfs that fills
    up while the checkpoints are written, and a read-only one as the run directory."""
    small, readonly = tmp_path / "small", tmp_path / "readonly"
    if not _mount_tmpfs(small, "size=1m"):
        pytest.skip("mount is not permitted here")
    try:
        _mount_tmpfs(readonly, "ro,size=1m")
        args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=2",
                "checkpoint.every_n_steps=2"]
        p = in_process(args, dict(env, SPATIALPROBE_MIN_FREE_MB="0"), tmp_path, small / "run")
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
        line = p.stderr.strip().splitlines()[-1]
        assert line.startswith(f"spatialprobe: error: could not write {small / 'run' / 'checkpoints'}/")
        assert "No space left on device (ENOSPC)" in line, line
        kept = [c for c in (small / "run" / "checkpoints").glob("*.ckpt")]
        assert kept and all(torch.load(c, weights_only=True)["global_step"] > 0 for c in kept)  # intact
        assert not list((small / "run" / "checkpoints").glob(".*.tmp"))
        p = cli("spatialprobe.train", [*args, f"hydra.run.dir={readonly / 'run'}"], env, tmp_path)
        assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
            f"spatialprobe: error: hydra.run.dir='{readonly / 'run'}': output directory is not writable (Read-only "
            f"file system in {readonly}); choose a writable place")
    finally:
        for mount in (small, readonly):
            subprocess.run(["umount", str(mount)], capture_output=True)
