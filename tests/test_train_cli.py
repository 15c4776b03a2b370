"""End to end through the real entry point: a tiny run writes a complete record; bad input fails early."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, run_cli


def train(args, env, cwd, run_dir):
    return run_cli("spatialprobe.train", [*args, f"hydra.run.dir={run_dir}"], env, cwd)


def test_tiny_run_writes_a_complete_record_and_rerun_skips(fake_cifar10, env, tmp_path):
    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY]
    p = train(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["reason"] is None
    assert rec["model"] == "resnet18" and rec["dataset"] == "cifar10" and rec["method"] == "none" and rec["k"] == 0
    assert isinstance(rec["params"], int) and rec["params"] > 0 and rec["flops"] > 0
    for key in ("val_top1_best", "val_top1_final", "test_top1_final", "test_top1_best", "test_top1", "val_top1"):
        assert 0.0 <= rec[key] <= 100.0, key
    assert rec["data_sizes"] == {"train": 160, "val": 64, "test": 64}
    assert rec["config"]["model"]["width"] == 0.0625 and rec["config_hash"] and rec["wall_time_s"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert rec["progress"] == {"epoch": 1, "epochs": 1}
    # the console: our own lines; Lightning's info lines, tips, model summary and warnings: in the log file
    console, logfile = p.stdout + p.stderr, (run_dir / "train.log").read_text()
    for noise in ("GPU available", "Tip:", "Total Flops", "Warning", "srun"):
        assert noise not in console, noise
    assert "GPU available" in logfile and "Total params" in logfile and "test_top1=" in console
    csv = (run_dir / "logs" / "attempt-1" / "metrics.csv").read_text()
    assert csv.splitlines()[0].split(",") == [  # the column names (MetricCollection + log_dict) stay these
        "epoch", "lr-SGD", "step", "test_loss", "test_top1", "test_top5", "train_loss_epoch", "train_loss_step",
        "train_top1", "train_top5", "val_loss", "val_top1", "val_top5"]
    assert 0.0 <= rec["test_top5_final"] <= 100.0 and rec["test_top5_final"] >= rec["test_top1"]
    # the same command again: nothing is retrained, the record stays as it was
    p2 = train(args, env, tmp_path, run_dir)
    assert p2.returncode == 0 and "skipped, already complete" in p2.stdout
    assert json.loads((run_dir / "result.json").read_text())["finished"] == rec["finished"]
    # a different config into the same directory is refused, the record kept
    p3 = train([*args, "seed=5"], env, tmp_path, run_dir)
    assert p3.returncode == 2 and "different configuration" in p3.stderr
    assert json.loads((run_dir / "result.json").read_text())["seed"] == 0


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
    val = [row["val_top1"] for row in run["history"] if "val_top1" in row]
    assert len(val) == 2 and all(0 <= v <= 100 for v in val)
    assert val[-1] == pytest.approx(rec["val_top1_final"], abs=1e-3)
    assert any("train_loss_step" in row for row in run["history"])
    assert run["summary"]["test_top1_final"] == pytest.approx(rec["test_top1_final"], abs=1e-3)
    assert run["summary"]["params"] == rec["params"]
    assert run["config"]["model"]["width"] == 0.0625
