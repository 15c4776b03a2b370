"""A lab's own configs and Hydra's plugins: a user's config folder (``--config-dir``, ``hydra.searchpath``) with an
experiment and a model of their own, and third-party sweepers and launchers (Optuna, joblib)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from conftest import TINY, cli
from spatialprobe.config.cli import config_dirs, hydra_group_options


def user_configs(root: Path) -> Path:
    """A lab's folder: an experiment of theirs, and a model yaml that names a registered architecture."""
    (root / "experiment").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "model" / "tiny_resnet.yaml").write_text(
        "defaults:\n  - resnet18\n  - _self_\nname: tiny_resnet\nwidth: 0.0625\n")
    (root / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: tiny_resnet\n  - override /method: spatial_shuffle\n"
        "experiment_name: mine\nk: 2\n")
    return root


def test_the_search_path_of_a_command_line():
    assert config_dirs(["--config-dir", "/a/b", "x=1"]) == ["file:///a/b"]
    assert config_dirs(["-cd", "/c"]) == ["file:///c"] and config_dirs(["--config-dir=/d"]) == ["file:///d"]
    assert config_dirs(["hydra.searchpath=[file:///e,pkg://lab.confs]"]) == ["file:///e", "pkg://lab.confs"]


def test_a_users_config_dir_and_search_path_give_their_options(tmp_path):
    confs = user_configs(tmp_path / "my_confs")
    assert "mine" in hydra_group_options("experiment", ["--config-dir", str(confs)])
    assert "tiny_resnet" in hydra_group_options("model", [f"hydra.searchpath=[file://{confs}]"])
    assert "mine" not in hydra_group_options("experiment", [])
    assert "_base" not in hydra_group_options("model", [])  # shared keys, no option


@pytest.mark.parametrize("how", ["config-dir", "searchpath"])
def test_a_users_experiment_trains_from_their_own_folder(fake_cifar10, tmp_path, env, how):
    confs = user_configs(tmp_path / "my_confs")
    where = ["--config-dir", str(confs)] if how == "config-dir" else [f"hydra.searchpath=[file://{confs}]"]
    run_dir = tmp_path / "run"
    args = [*where, "experiment=mine", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
            "trainer.limit_train_batches=2", f"hydra.run.dir={run_dir}"]
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["status"] == "complete" and rec["model"] == "tiny_resnet" and rec["method"] == "spatial_shuffle"
    assert rec["k"] == 2 and rec["config"]["experiment_name"] == "mine"
    # an option that is nowhere is still one line, listing what Hydra would find (theirs included)
    p = cli("spatialprobe.train", [*where, "experiment=yours", "dry_run=true"], env, tmp_path)
    line = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and line.startswith("spatialprobe: error: experiment='yours' is invalid: unknown experiment")
    assert "mine" in line and "vgg16_cifar100_kcurve" in line


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="hydra-optuna-sweeper is not installed (pip install 'spatialprobe[optuna]')")
@pytest.mark.slow
def test_an_optuna_search_over_the_learning_rate(fake_cifar10, tmp_path, env):
    """docs/sweeps.md's example, at a tiny size: 2 Optuna trials over recipe.lr for spatial_shuffle at K=2."""
    sweep = tmp_path / "optuna"
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
            "hydra.sweeper.sampler.seed=0", "recipe.lr=interval(0.01,0.2)", "method=spatial_shuffle", "k=2",
            "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.limit_train_batches=2",
            f"hydra.sweep.dir={sweep}"]
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "hydra/sweeper=optuna chooses its jobs while it runs" in p.stdout
    records = [json.loads(r.read_text()) for r in sweep.glob("*/result.json")]
    lrs = sorted(r["config"]["recipe"]["lr"] for r in records)
    assert len(records) == 2 and all(r["status"] == "complete" for r in records) and lrs[0] != lrs[1]
    assert all(0.01 <= lr <= 0.2 for lr in lrs)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(r["test_top1"] for r in records), abs=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher is not installed (pip install 'spatialprobe[joblib]')")
@pytest.mark.slow
def test_the_joblib_launcher_runs_a_sweep(fake_cifar10, tmp_path, env):
    sweep = tmp_path / "joblib"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "method=spatial_shuffle", "k=1,2",
            "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.limit_train_batches=2",
            f"hydra.sweep.dir={sweep}"]
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 of 2 runs complete" in p.stdout
    assert sorted(json.loads(r.read_text())["k"] for r in sweep.glob("*/result.json")) == [1, 2]


def test_help_lists_the_real_options_of_every_group_theirs_and_the_plugins_included(tmp_path, env):
    confs = user_configs(tmp_path / "my_confs")
    p = cli("spatialprobe.train", ["--help", "--config-dir", str(confs)], env, tmp_path)
    assert p.returncode == 0
    groups = dict(line.strip().split(": ", 1) for line in p.stdout.splitlines() if line.startswith("  "))
    assert "_base" not in p.stdout and "_arrays" not in p.stdout and "_position" not in p.stdout
    assert "mine" in groups["experiment"].split(", ") and "tiny_resnet" in groups["model"].split(", ")
    assert {"basic", "local", "slurm"} <= set(groups["hydra/launcher"].split(", "))
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None:
        assert "optuna" in groups["hydra/sweeper"].split(", ")
