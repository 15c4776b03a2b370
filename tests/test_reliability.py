"""No result is ever lost: kills, signals, crashes, divergence, unusable output directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY, run_cli
from spatialprobe.callbacks import AtomicCheckpointIO
from spatialprobe.records import write_json_atomic

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


@pytest.fixture(scope="module")
def uninterrupted(fake_cifar10, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    env = det_env(dict(os.environ, SPATIALPROBE_CACHE=str(tmp / "cache"), WANDB_MODE="offline"))
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *RESUMABLE]
    p = finish(args, env, tmp, tmp / "run")
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
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 12
    resumed = finish([*args, "debug.kill_at_step=14"], env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
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
        time.sleep(0.05)
    time.sleep(0.1 + 0.4 * (os.getpid() % 7) / 7)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    resumed = finish(args, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(run_dir, reference)


def test_sigterm_saves_and_stops_with_a_failed_record_then_resumes(uninterrupted, tmp_path):
    args, env, reference = uninterrupted
    run_dir = tmp_path / "run"
    slow = [*args, "trainer.max_epochs=3"]
    p = start(slow, env, tmp_path, run_dir)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    rec = record(run_dir)
    if p.returncode != 0:  # (the run may have finished before the signal arrived: then it is simply complete)
        assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
        assert rec["status"] == "failed" and "SIGTERM" in rec["reason"] and "resume" in rec["reason"]
    resumed = finish(slow, env, tmp_path, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(run_dir, reference)


def test_injected_crash_fails_the_record_and_the_rerun_completes(fake_cifar10, env, tmp_path):
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=2", "debug.crash_at_epoch=0"]
    run_dir = tmp_path / "run"
    p = finish(args, env, tmp_path, run_dir)
    assert p.returncode != 0
    rec = record(run_dir)
    assert rec["status"] == "failed" and "InjectedFault" in rec["reason"]
    p = finish(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-2000:]
    assert record(run_dir)["status"] == "complete" and record(run_dir)["attempts"] == 2


def test_sweep_with_injected_failures_reports_them_and_the_rerun_redoes_only_those(fake_cifar10, env, tmp_path):
    """Jobs #1 and #2 of a 4-job K-sweep crash once: the sweep goes on, names them, exits 1; the same
    command again trains only those two and leaves the complete records untouched."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY, "trainer.max_epochs=2",
            "method=spatial_shuffle", "k=0,1,2,3", "debug.crash_at_epoch=0", "debug.only_jobs=[1,2]",
            f"hydra.sweep.dir={sweep_dir}"]
    p = run_cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 1, (p.stdout[-3000:], p.stderr[-3000:])
    summary = p.stdout[p.stdout.index("2 of 4 runs complete"):]  # the sweep's last words
    assert summary.count("InjectedFault") == 2, summary
    by_k = {record(d)["k"]: d for d in sweep_dir.iterdir() if (d / "result.json").is_file()}
    first = {k: record(d) for k, d in by_k.items()}
    assert {k: r["status"] for k, r in first.items()} == {0: "complete", 1: "failed", 2: "failed", 3: "complete"}
    assert all(f"failed: {by_k[k]}" in summary for k in (1, 2))
    assert all("InjectedFault" in first[k]["reason"] for k in (1, 2))

    p = run_cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert "4 of 4 runs complete" in p.stdout and p.stdout.count("skipped, already complete") == 2
    again = {k: record(d) for k, d in by_k.items()}
    assert again[0] == first[0] and again[3] == first[3]  # not touched
    assert all(again[k]["status"] == "complete" and again[k]["attempts"] == 2 for k in (1, 2))


def test_divergence_stops_with_a_clear_message_and_a_failed_record(fake_cifar10, env, tmp_path):
    run_dir = tmp_path / "run"
    p = finish(["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "recipe.lr=1e12", "recipe.schedule=constant"],
               env, tmp_path, run_dir)
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
    p = subprocess.run([sys.executable, "-m", "spatialprobe.train", *args], env={**env, **env_extra}, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
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
    with pytest.raises(OSError):
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
