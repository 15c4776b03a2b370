"""inspect and evaluate through their entry points (in this process, :func:`conftest.cli`), on the output
of a real (tiny) training run."""

from __future__ import annotations

import json
import statistics

import pytest

from conftest import TINY, cli


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_inspect_prints_the_papers_numbers_and_writes_nothing(env, tmp_path):
    p = cli("spatialprobe.inspect", ["model=vgg16", "dataset=cifar100", "method=conv1x1", "k=5"], env, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    info = last_json(p.stdout)
    assert info["params"] == 23_529_636 and info["params_m"] == 23.53
    assert info["modified_units"] == [8, 9, 10, 11, 12]
    assert [fm["input"] for fm in info["feature_maps"]][-1] == [2, 2] and len(info["feature_maps"]) == 13
    assert info["receptive_field"] == 60 and info["flops"] > 0  # S1 Fig. 3 right: K=5 -> 60
    assert list(tmp_path.iterdir()) == []  # no run directory, no logs
    p = cli("spatialprobe.inspect", ["model=resnet50", "dataset=cifar100"], env, tmp_path)
    assert last_json(p.stdout)["params"] == 23_705_252


@pytest.mark.parametrize(
    "args,needle",
    [
        (["model=vgg16", "method=conv1x1", "k=14"], "k=14 is invalid: vgg16_bn has 13 modifiable units (valid: 0..13)"),
        (["method=patch_shuffle", "method.patch_size=0", "k=1"], "method.patch_size=0"),
        (["method=warp"], "method='warp'"),
    ],
)
def test_inspect_bad_input(args, needle, env, tmp_path):
    p = cli("spatialprobe.inspect", args, env, tmp_path)
    assert p.returncode == 2 and needle in p.stderr.strip().splitlines()[-1], p.stderr


@pytest.fixture(scope="module")
def trained(fake_cifar10, tmp_path_factory):
    """A tiny ResNet-18 trained with spatial_shuffle on its last 2 units."""
    import os

    tmp = tmp_path_factory.mktemp("trained")
    env = dict(os.environ, SPATIALPROBE_CACHE=str(tmp / "cache"), WANDB_MODE="offline")
    run_dir = tmp / "run"
    p = cli("spatialprobe.train", ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
                                       "method=spatial_shuffle", "k=2", f"hydra.run.dir={run_dir}"], env, tmp)
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir, env, fake_cifar10


def test_train_with_a_method_records_what_was_modified(trained):
    run_dir, _, _ = trained
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["method"] == "spatial_shuffle" and rec["k"] == 2
    assert rec["modified_units"] == [6, 7] and rec["modified_unit_names"] == ["layer4.0", "layer4.1"]
    assert rec["receptive_field"] > 0 and len(rec["feature_maps"]) == 8


def test_evaluate_test_time_method_passes_mean_and_std(trained, tmp_path):
    run_dir, env, root = trained
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    p = cli("spatialprobe.evaluate", [f"ckpt={ckpt}", "method=channel_shuffle", "k=1", "eval.passes=4"],
                env, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = last_json(p.stdout)
    assert rec["passes"] == 4 and len(rec["top1"]) == 4 and rec["stochastic"] is True
    assert rec["test_time_method"]["method"] == "channel_shuffle" and rec["test_time_method"]["modified_units"] == [7]
    assert rec["top1_mean"] == pytest.approx(statistics.fmean(rec["top1"]), abs=1e-4)
    assert rec["top1_std"] == pytest.approx(statistics.stdev(rec["top1"]), abs=1e-4) and rec["top1_std"] > 0
    assert all(abs(t * 64 / 100 - round(t * 64 / 100)) < 1e-3 for t in rec["top1"])  # counts over 64 images
    assert len(set(rec["loss"])) == 4  # every pass drew its own permutations
    assert rec["eval_seed"] == 1  # training seed 0 + 1
    saved = json.loads(open(rec["path"]).read())
    assert saved["top1"] == rec["top1"] and saved["path"].startswith(str(run_dir / "checkpoints"))
    # same seed, same numbers
    again = last_json(cli("spatialprobe.evaluate", [f"ckpt={ckpt}", "method=channel_shuffle", "k=1",
                                                        "eval.passes=4"], env, tmp_path).stdout)
    assert again["top1"] == rec["top1"]


def test_evaluate_trained_with_tested_without_is_deterministic(trained, tmp_path):
    run_dir, env, _ = trained
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    p = cli("spatialprobe.evaluate", [f"ckpt={ckpt}", "eval.keep_method=false", "eval.passes=5"], env, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = last_json(p.stdout)
    assert rec["stochastic"] is False and rec["passes"] == 1 and rec["top1_std"] == 0.0
    assert "eval-trained-off-k0" in rec["path"]
    assert "(spatial_shuffle k=2) evaluated without its method: top1 " in p.stdout  # not "as trained"


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["method=gap_fc", "k=1"], "method='gap_fc' is invalid: only a parameter-free method"),
        (["method=spatial_shuffle", "k=9"], "k=9 is invalid"),
        (["eval.passes=0"], "eval.passes=0"),
    ],
)
def test_evaluate_bad_input(trained, tmp_path, extra, needle):
    run_dir, env, _ = trained
    p = cli("spatialprobe.evaluate", [f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *extra], env, tmp_path)
    assert p.returncode == 2 and needle in p.stderr.strip().splitlines()[-1], p.stderr


def test_evaluate_missing_checkpoint(env, tmp_path):
    p = cli("spatialprobe.evaluate", [f"ckpt={tmp_path / 'nope.ckpt'}"], env, tmp_path)
    assert p.returncode == 2 and "no such checkpoint" in p.stderr


def test_evaluate_finds_moved_data_through_data_root(trained, tmp_path):
    """docs/methods.md: ``data.root=`` points evaluate at the data when it no longer lives where training read it."""
    import torch

    run_dir, env, root = trained
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    ckpt["spatialprobe_config"]["dataset"]["root"] = str(tmp_path / "moved-away")  # where the data was
    moved = tmp_path / "last.ckpt"
    torch.save(ckpt, moved)
    args = ["eval.keep_method=false"]
    p = cli("spatialprobe.evaluate", [f"ckpt={moved}", *args], env, tmp_path)
    assert p.returncode == 2 and "moved-away" in p.stderr.strip().splitlines()[-1], p.stderr[-2000:]
    p = cli("spatialprobe.evaluate", [f"ckpt={moved}", *args, f"data.root={root}"], env, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    here = last_json(p.stdout)
    there = last_json(cli("spatialprobe.evaluate", [f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *args],
                              env, tmp_path).stdout)
    assert here["images"] == there["images"] == 64 and here["top1"] == there["top1"] and here["loss"] == there["loss"]
