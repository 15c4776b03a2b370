"""End to end through the training entry point: a tiny run writes a complete record whose numbers
other commands reproduce; re-runs skip, resume or retrain as documented; bad input fails early.

One run goes through a real ``python -m spatialprobe.train`` process (the smoke test); the others
call the same entry point in this process (:func:`conftest.cli`).
"""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import torch

from conftest import REPO, TINY, cli, run_cli


def train(args, env, cwd, run_dir, process=False):
    return (run_cli if process else cli)("spatialprobe.train", [*args, f"hydra.run.dir={run_dir}"], env, cwd)


def evaluate(ckpt, env, cwd, *extra) -> dict:
    p = cli("spatialprobe.evaluate", [f"ckpt={ckpt}", *extra], env, cwd)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def metrics(run_dir, attempt=1) -> list[dict]:
    with open(run_dir / "logs" / f"attempt-{attempt}" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def per_epoch(rows, key) -> dict[int, float]:
    return {int(r["epoch"]): float(r[key]) for r in rows if r.get(key)}


def of_64(value: float) -> bool:
    """A top-1 accuracy over the 64 test images is a multiple of 100/64 (to the record's 4 decimals)."""
    return abs(value * 64 / 100 - round(value * 64 / 100)) < 1e-3


def test_tiny_run_writes_a_complete_record_and_rerun_skips(fake_cifar10, env, tmp_path):
    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY]
    p = train(args, env, tmp_path, run_dir, process=True)  # the smoke test: a real process
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["reason"] is None
    assert rec["model"] == "resnet18" and rec["dataset"] == "cifar10" and rec["method"] == "none" and rec["k"] == 0
    assert rec["params"] == 44_622 and rec["flops"] > 0 and rec["steps"] == 160 // 16 and rec["epochs"] == 1
    assert rec["data_sizes"] == {"train": 160, "val": 64, "test": 64}
    assert rec["config"]["model"]["width"] == 0.0625 and rec["config_hash"] and rec["wall_time_s"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert rec["progress"] == {"epoch": 1, "epochs": 1} and rec["resumed_from"] is None
    # the git commit of the checkout that ran (docs/configuration.md), and whether tracked files differed from it
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (not an unpacked source archive)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        assert rec["git_commit"] == head.stdout.strip() and len(rec["git_commit"]) == 40
        assert rec["git_dirty"] is bool(dirty)
    # the console: our own lines; Lightning's info lines, tips, model summary and warnings: in the log file
    console, logfile = p.stdout + p.stderr, (run_dir / "train.log").read_text()
    for noise in ("GPU available", "Tip:", "Total Flops", "Warning", "srun"):
        assert noise not in console, noise
    assert "GPU available" in logfile and "Total params" in logfile and "test_top1=" in console
    rows = metrics(run_dir)
    assert list(rows[0]) == [  # the column names (MetricCollection + log_dict) stay these
        "epoch", "lr-SGD", "step", "test_loss", "test_top1", "test_top5", "train_images_per_s", "train_loss_epoch", "train_loss_step",
        "train_top1", "train_top5", "val_loss", "val_top1", "val_top5"]
    # the numbers are real counts over the 64 test images, and other paths reproduce them:
    for key in ("val_top1_best", "val_top1_final", "test_top1_final", "test_top1_best", "test_top5_final"):
        assert of_64(rec[key]), (key, rec[key])
    assert rec["test_top5_final"] >= rec["test_top1"]
    assert rec["test_top1"] == rec["test_top1_final"] and rec["val_top1"] == rec["val_top1_final"]
    # without val_size the test images double as validation, and the unmodified network is deterministic
    assert rec["val_top1_final"] == rec["test_top1_final"] == per_epoch(rows, "val_top1")[0]
    last = evaluate(run_dir / "checkpoints" / "last.ckpt", env, tmp_path)
    assert last["top1_mean"] == rec["test_top1_final"] and last["top5_mean"] == rec["test_top5_final"]
    assert evaluate(run_dir / "checkpoints" / "best.ckpt", env, tmp_path)["top1_mean"] == rec["test_top1_best"]
    # the same command again: nothing is retrained, the record stays as it was
    p2 = train(args, env, tmp_path, run_dir)
    assert p2.returncode == 0 and "skipped, already complete" in p2.stdout
    assert json.loads((run_dir / "result.json").read_text()) == rec
    # a different config into the same directory is refused, the record kept
    p3 = train([*args, "seed=5"], env, tmp_path, run_dir)
    assert p3.returncode == 2 and "different configuration" in p3.stderr.strip().splitlines()[-1]
    assert json.loads((run_dir / "result.json").read_text()) == rec


def test_best_ckpt_holds_the_epoch_of_the_highest_val_top1(fake_cifar10, env, tmp_path):
    """docs/configuration.md: best.ckpt = highest val_top1. The learning rate jumps 100x (to 5) for the last epoch,
    which wrecks the network: the best epoch is an earlier one, and best != last. Every test metric is recorded
    for both (docs/position.md: test_cons<S> and test_cons<S>_best), each that checkpoint's own."""
    from conftest import consistency_by_hand

    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=3", "recipe.lr=0.05",
            "recipe.schedule=multistep", "recipe.milestones=[0.6]", "recipe.gamma=100", "eval.consistency=4",
            "eval.consistency_passes=2"]
    p = train(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    val = per_epoch(metrics(run_dir), "val_top1")
    assert sorted(val) == [0, 1, 2]
    best_epoch = max(val, key=lambda e: (val[e], -e))  # the first epoch that reached the maximum
    assert best_epoch != 2, val  # the premise of this test: the last epoch is not the best
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] == best_epoch and last["epoch"] == 2
    assert rec["val_top1_best"] == pytest.approx(val[best_epoch], abs=1e-4)
    assert rec["val_top1_final"] == pytest.approx(val[2], abs=1e-4)
    # the weights in best.ckpt are the best epoch's: evaluated on the (same) test images they give its accuracy
    assert evaluate(run_dir / "checkpoints" / "best.ckpt", env, tmp_path)["top1_mean"] == pytest.approx(
        val[best_epoch], abs=1e-3) == rec["test_top1_best"]
    # Cons.4 over 64 test images x 2 passes, of the final and of the best network, recomputed here
    assert rec["test_cons4"] == pytest.approx(consistency_by_hand(run_dir / "checkpoints" / "last.ckpt", 4, 2,
                                                                  rec["eval_seed"]), abs=1e-3)
    assert rec["test_cons4_best"] == pytest.approx(consistency_by_hand(run_dir / "checkpoints" / "best.ckpt", 4, 2,
                                                                       rec["eval_seed"]), abs=1e-3)


def test_resume_false_trains_an_unfinished_run_from_scratch(fake_cifar10, env, tmp_path):
    """An unfinished run resumes from last.ckpt by default; resume=false starts again at step 0
    (and retrains a complete run instead of skipping it)."""
    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=2", "checkpoint.every_n_steps=5"]
    p = train([*args, "debug.crash_at_epoch=0"], env, tmp_path, run_dir)  # fails after epoch 0: last.ckpt at step 10
    assert p.returncode != 0 and json.loads((run_dir / "result.json").read_text())["status"] == "failed"
    p = train([*args, "resume=false"], env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    steps = [int(r["step"]) for r in metrics(run_dir, attempt=2)]
    assert min(steps) == 0 and max(steps) >= 19  # both epochs trained again
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["attempts"] == 2 and rec["steps"] == 20
    p = train([*args, "resume=false"], env, tmp_path, run_dir)  # complete: retrained all the same
    assert p.returncode == 0 and "skipped" not in p.stdout
    assert json.loads((run_dir / "result.json").read_text())["attempts"] == 3
    assert min(int(r["step"]) for r in metrics(run_dir, attempt=3)) == 0
    # the default (resume=true) on a failed run continues from its checkpoint instead
    other = tmp_path / "other"
    train([*args, "debug.crash_at_epoch=0"], env, tmp_path, other)
    assert train(args, env, tmp_path, other).returncode == 0
    assert min(int(r["step"]) for r in metrics(other, attempt=2)) >= 10


BAD = [
    (["dataset=imagenet9"], "dataset='imagenet9'", "cifar10"),
    (["dataset.subset=0"], "dataset.subset=0", ">= 1"),
    (["recipe.batch_size=-4"], "recipe.batch_size=-4", ">= 1"),
    (["dataset.root=/nonexistent/cifar"], "/nonexistent/cifar", "dataset.download"),
]


@pytest.mark.parametrize("extra,needle,hint", BAD, ids=[b[1] for b in BAD])
def test_bad_input_one_line_exit_2_no_complete_record(extra, needle, hint, fake_cifar10, env, tmp_path):
    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, *extra]
    p = train(args, env, tmp_path, run_dir)
    assert p.returncode == 2, (p.stdout[-2000:], p.stderr[-2000:])
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("spatialprobe: error: ") and needle in lines[-1] and hint in lines[-1], lines
    assert "Traceback" not in p.stderr
    rec = run_dir / "result.json"
    assert not rec.exists() or json.loads(rec.read_text())["status"] != "complete"


def test_archive_without_class_folders_fails_before_training(tmp_path, env):
    import tarfile

    (tmp_path / "x.txt").write_text("x")
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(tmp_path / "x.txt", arcname="stuff/x.txt")
    run_dir = tmp_path / "run"
    p = train(["dataset=cifar10", f"dataset.root={bad}", *TINY], env, tmp_path, run_dir)
    assert p.returncode == 2 and "no class folders found" in p.stderr.strip().splitlines()[-1]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "failed" and "no class folders" in rec["reason"]
    assert not (run_dir / "checkpoints").exists()


def test_wandb_offline_run_holds_the_logged_metrics(fake_cifar10, env, tmp_path):
    from wandb_offline import run_contents

    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.max_epochs=2", "logger=wandb",
            "logger.tags=[mine]", "logger.group=g1"]
    p = train(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    run = run_contents(files[0])
    assert run["group"] == "g1"
    assert set(run["tags"]) == {"model:resnet18", "dataset:cifar10", "method:none", "k:0", "mine"}
    # the W&B history holds exactly the values of metrics.csv, epoch by epoch
    val = [row["val_top1"] for row in run["history"] if "val_top1" in row]
    assert val == pytest.approx(list(per_epoch(metrics(run_dir), "val_top1").values()), abs=1e-4) and len(val) == 2
    assert val[-1] == pytest.approx(rec["val_top1_final"], abs=1e-3)
    assert any("train_loss_step" in row for row in run["history"])
    assert run["summary"]["test_top1_final"] == pytest.approx(rec["test_top1_final"], abs=1e-3)
    assert run["summary"]["params"] == rec["params"]
    assert run["config"]["model"]["width"] == 0.0625


def test_git_state_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    """The record's ``git_commit`` / ``git_dirty`` (runner.REPO: the checkout the package was imported from)."""
    from spatialprobe.run.records import git_state

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                   "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path)}).stdout.strip()

    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}  # not a repository
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "first")
    assert git_state(tmp_path) == {"git_commit": git("rev-parse", "HEAD"), "git_dirty": False}
    (tmp_path / "untracked.txt").write_text("not part of the code\n")
    assert git_state(tmp_path)["git_dirty"] is False  # untracked files do not count
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path) == {"git_commit": git("rev-parse", "HEAD"), "git_dirty": True}
