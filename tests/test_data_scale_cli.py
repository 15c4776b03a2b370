"""Issue 6 through the training entry point (in this process; DDP in its own processes): Small-ImageNet /
ImageNet runs, DDP, bad input as one line."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, cli, run_cli
from fakeimagenet import make_jpeg_folders, make_small_imagenet

# TINY without the CIFAR-only keys (verify, download)
COMMON = [a for a in TINY if not a.startswith("dataset.")]


def train(args, env, cwd, run_dir, process=False):
    return (run_cli if process else cli)("spatialprobe.train", [*args, f"hydra.run.dir={run_dir}"], env, cwd)


def test_tiny_imagenet32_run_through_the_entry_point(tmp_path, env):
    root = make_small_imagenet(tmp_path / "imagenet32", 32, per_batch=8, val=16)
    run_dir = tmp_path / "run"
    args = ["dataset=imagenet32", f"dataset.root={root}", "model=resnet18", "dataset.val_size=16", *COMMON]
    p = train(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["dataset"] == "imagenet32"
    assert rec["data_sizes"] == {"train": 64, "val": 16, "test": 16} and rec["steps"] == 4
    assert rec["config"]["dataset"]["num_classes"] == 1000
    assert abs(rec["test_top1"] * 16 / 100 - round(rec["test_top1"] * 16 / 100)) < 1e-3  # a count over 16 images
    assert len(list((tmp_path / "cache").glob("smallimagenet-32px-*/train_x.npy"))) == 1


def test_tiny_imagenet_run_with_the_imagenet_recipe(tmp_path, env):
    root = make_jpeg_folders(tmp_path / "ilsvrc", num_classes=3, train=4, val=2)
    run_dir = tmp_path / "run"
    args = ["dataset=imagenet", f"dataset.root={root}", "dataset.num_classes=3", "dataset.num_workers=1",
            "recipe=imagenet", "model=resnet18", *[a for a in COMMON if "batch_size" not in a], "recipe.batch_size=4"]
    p = train(args, env, tmp_path, run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["data_sizes"] == {"train": 12, "val": 6, "test": 6}
    assert rec["flops"] > 0 and rec["steps"] == 3
    lr = [ln.split(",")[1] for ln in (run_dir / "logs/attempt-1/metrics.csv").read_text().splitlines()[1:]]
    assert float(next(v for v in lr if v)) == pytest.approx(0.1 * 4 / 256)  # 0.1 per 256 images


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_record(fake_cifar10, tmp_path, env, monkeypatch):
    """DDP on 2 processes; 63 test images (shards of 32 and 31): the record's top-1 / top-5 / loss are
    those of one process evaluating the same weights on all 63 images, each counted once."""
    from hydra import compose, initialize_config_dir

    from spatialprobe import CONF_DIR
    from spatialprobe.evaluate import evaluate

    run_dir = tmp_path / "run"
    args = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.strategy=ddp", "trainer.devices=2",
            "dataset.eval_subset=63", "trainer.precision=32-true"]  # fp32: compared with an fp32 evaluation
    p = train(args, env, tmp_path, run_dir, process=True)  # Lightning starts the second rank as a process
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["attempts"] == 1
    assert rec["steps"] == 160 // 2 // 16  # every rank takes half of each epoch
    assert p.stdout.count("test_top1=") == 1

    monkeypatch.setenv("SPATIALPROBE_CACHE", env["SPATIALPROBE_CACHE"])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={run_dir}/checkpoints/last.ckpt", "eval.device=cpu"])
    one = evaluate(cfg)
    assert one["images"] == 63 and rec["data_sizes"]["test"] == 63
    assert rec["test_top1"] == pytest.approx(one["top1_mean"], abs=1e-3)
    assert rec["test_top5_final"] == pytest.approx(one["top5_mean"], abs=1e-3)
    assert rec["test_loss_final"] == pytest.approx(one["loss_mean"], rel=1e-4)


BAD = [  # one case per kind of check; the other bad inputs are covered in-process
    (["dataset=cifar100_64", "dataset.image_size=48"], "dataset.image_size=48", "multiple of 32", "(valid: 32, 64, 96"),
    (["dataset=imagenet32", "dataset.root={missing}"], "missing Small-ImageNet batch files: train_data_batch_3",
     "image-net.org", ""),
    (["trainer=gpu", "trainer.precision=bf16-mixed"], "trainer.accelerator='gpu'", "no CUDA device", "(valid: cpu"),
]


@pytest.mark.parametrize("extra,needle,hint,choices", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_input_one_line_exit_2(extra, needle, hint, choices, env, tmp_path):
    missing = make_small_imagenet(tmp_path / "in32", 32, per_batch=2, val=2)
    next(missing.rglob("train_data_batch_3.npz")).unlink()
    extra = [e.format(missing=missing) for e in extra]
    p = train([*COMMON, *extra], env, tmp_path, tmp_path / "run")
    assert p.returncode == 2, (p.stdout[-2000:], p.stderr[-2000:])
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("spatialprobe: error: ") and needle in lines[-1] and hint in lines[-1], lines
    assert choices in lines[-1] and "Traceback" not in p.stderr
