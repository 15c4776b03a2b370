"""The schema (spatialprobe.config.schema) against the real models and registries, and the one list of result-neutral keys.

* what validation believes (unit counts, the width rule, methods, data kinds, ...) is what the code builds;
* the answers that must be instant import nothing of torch / torchvision / torchmetrics / Lightning;
* result-neutral keys: they change neither the run directory's name, nor the config hash, nor the figures'
  variants; every other key changes the hash; changing all of them at once trains the same network bit
  for bit; a run whose data moved is skipped when complete and resumed when killed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import REPO, TINY, compose_train
from spatialprobe.config import schema
from spatialprobe.config.cli import group_choices
from spatialprobe.run.records import config_hash

HEAVY = ("torch", "torchvision", "torchmetrics", "pytorch_lightning", "lightning", "lightning_fabric", "kornia")


# --------------------------------------------------------------------------- the schema agrees with the code
def build(arch: str, width: float, classes: int = 10):
    from spatialprobe.models import build_model

    return build_model(OmegaConf.create({"arch": arch, "width": width, "stem": "auto", "fc_width": 32}), classes, 32)


@pytest.mark.parametrize("arch", schema.ARCHS)
def test_unit_counts_are_those_of_the_built_models(arch):
    from spatialprobe.models import ARCHS

    assert set(ARCHS) == set(schema.UNIT_COUNTS)
    assert len(build(arch, 1.0 if arch in schema.FULL_WIDTH_ONLY else 0.125).unit_names()) == schema.UNIT_COUNTS[arch]


@pytest.mark.parametrize("arch", schema.ARCHS)
def test_the_width_rule_names_the_narrowest_layer_of_the_built_models(arch):
    widths = (1.0,) if arch in schema.FULL_WIDTH_ONLY else (1.0, 0.3, 0.1, 0.0625, 0.02) if arch in (
        "resnet18", "vgg16_bn", "squeezenet1_0", "mobilenet_v2") else (0.3, 0.1, 0.0625, 0.02)
    for width in widths:
        model = build(arch, width, classes=1000)  # the classifier (1000 outputs) is never the narrowest layer
        widths_built = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] or \
            [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]  # the MLP: its hidden layer
        assert min(widths_built) == schema.narrowest_channels(arch, width), (arch, width)


def test_every_model_option_at_its_default_width_keeps_the_minimum_and_the_tests_tiny_width_too():
    for option in group_choices("model"):
        cfg = compose_train(f"model={option}")
        schema.check_model(cfg)
    for arch in ("resnet18", "resnet50", "vgg16_bn"):  # conftest.TINY: model.width=0.0625
        assert schema.narrowest_channels(arch, 0.0625) == schema.MIN_CHANNELS


def test_methods_kinds_and_options_agree_with_the_registry_and_conf():
    from spatialprobe.methods import METHODS
    from spatialprobe.methods.conv1x1 import pool2x2, to_1x1

    assert set(METHODS) == set(schema.METHOD_KINDS) == set(group_choices("method"))
    for name, method in METHODS.items():
        assert method.kind == schema.METHOD_KINDS[name]
        assert (method.make_op is not None) == (method.kind == "op")
        if method.kind == "op":
            assert isinstance(method.make_op(OmegaConf.create({"patch_size": 2})), nn.Module)
    assert set(schema.PARAMETER_FREE) == {n for n, m in METHODS.items() if m.kind == "op"}
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=1)
    for downsample in schema.DOWNSAMPLE:
        assert to_1x1(conv, downsample)(torch.zeros(1, 4, 8, 8)).shape == (1, 4, 4, 4)
        pool2x2(downsample)


def flat_literal(t) -> list:
    return [x for a in typing.get_args(t) for x in (flat_literal(a) if typing.get_args(a) else [a])]


def test_data_task_recipe_and_trainer_choices_agree_with_the_code():
    from lightning_fabric.plugins.precision.precision import _PRECISION_INPUT

    from spatialprobe.data import KINDS
    from spatialprobe.models.resnet import resolve_stem
    from spatialprobe.tasks.base import build_optimizer, build_scheduler

    assert set(KINDS) == set(schema.DATASET_KINDS)
    assert set(schema.TASKS) == set(group_choices("task"))
    assert set(schema.LOGGERS) == set(group_choices("logger"))
    assert set(schema.PRECISIONS) == set(flat_literal(_PRECISION_INPUT))  # what Lightning's Trainer accepts
    params = [nn.Parameter(torch.zeros(2))]
    recipe = {"lr": 0.1, "batch_size": 8, "momentum": 0.9, "weight_decay": 0.0, "milestones": [0.5], "gamma": 0.1,
              "poly_power": 0.9, "alpha": 0.9, "eps": 1.0}  # every key check_recipe asks of some choice
    for optimizer in schema.OPTIMIZERS:
        opt = build_optimizer(params, {**recipe, "optimizer": optimizer})
        assert type(opt).__name__.lower() == optimizer
        for schedule in schema.SCHEDULES:
            assert (build_scheduler(opt, {**recipe, "schedule": schedule}, 2, 10) is None) == (schedule == "constant")
    for stem in schema.STEMS:
        assert resolve_stem(stem, 32) in schema.STEMS


def test_grid_task_brings_the_papers_recipe_unless_another_is_chosen():
    assert compose_train("dataset=grid_cifar10").recipe.name == "grid_location"
    assert compose_train("model=gapnet_resnet18", "dataset=grid_cifar10").recipe.name == "grid_location"
    assert compose_train("dataset=grid_cifar10", "recipe=cpu").recipe.name == "cpu"
    assert compose_train("experiment=grid_recognition").recipe.name == "grid_recognition"
    assert compose_train("dataset=cifar10").recipe.name == "cifar"
    assert schema.recipe_note(compose_train("dataset=grid_cifar10")) is None
    note = schema.recipe_note(compose_train("dataset=grid_cifar10", "dataset.target=class"))
    assert "dataset.target=class trains with recipe=grid_location" in note and "recipe=grid_recognition" in note


# --------------------------------------------------------------------------- instant answers
ANSWERS = [
    ("spatialprobe.train", ["model.width=-1"], 2),
    ("spatialprobe.train", ["model.widht=0.5"], 2),
    ("spatialprobe.train", ["-m", "experiment=vgg16_cifar100_kcurve", "dry_run=true"], 0),
    ("spatialprobe.inspect", ["model=resnet18", "method=conv1x1", "k=99"], 2),
    ("spatialprobe.evaluate", ["ckpt=none.ckpt"], 2),
    ("spatialprobe.evaluate", [], 2),
    ("spatialprobe.rank", [], 2),
    ("spatialprobe.decode", ["grid=1"], 2),
]


@pytest.mark.parametrize("module,args,status", ANSWERS, ids=[" ".join([m.split(".")[1], *a]) for m, a, _ in ANSWERS])
def test_instant_answers_import_nothing_heavy(module, args, status, env, tmp_path):
    """The rejected configuration, the dry run, inspect's bad K, evaluate's missing checkpoint... are answered
    from the schema alone (python -X importtime lists every module a process imports)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", module, *args], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == status, p.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert not heavy, heavy[:10]
    assert not (tmp_path / "runs").exists()  # and nothing was created


# --------------------------------------------------------------------------- result-neutral keys
def leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 1]
    return 1  # None, {}


def put(config: dict, key: str, value) -> dict:
    config = json.loads(json.dumps(config))
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return config


#: What this test holds to be result-neutral, written out here rather than read from the schema (so that the
#: hash is checked against a statement of its own, not against the rule it is computed with): where the data
#: lives and how it is read or checked, names, logging, checkpoint frequency, injected faults, resumption, the run lock.
NEUTRAL_BY_HAND = ("experiment", "experiment_name", "name", "resume", "dry_run", "cost", "paths", "dataset.root",
                   "dataset.format", "dataset.download", "dataset.verify", "logger", "checkpoint", "lock", "debug",
                   "trainer.enable_progress_bar", "trainer.log_every_n_steps")


def neutral_by_hand(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NEUTRAL_BY_HAND)


@pytest.mark.parametrize("overrides", [[], ["experiment=grid_location"], ["dataset=imagenet", "logger=wandb"],
                                       ["task=augshift", "model=vgg16", "method=patch_shuffle", "k=2"]])
def test_every_result_relevant_key_changes_the_hash_and_no_neutral_key_does(overrides):
    config = OmegaConf.to_container(compose_train(*overrides), resolve=True)
    reference = config_hash(config)
    relevant = neutral = 0
    for key, value in leaves(config):
        same = config_hash(put(config, key, changed(value))) == reference
        assert same == neutral_by_hand(key), key
        relevant, neutral = relevant + (not same), neutral + same
    assert relevant > 40 and neutral > 10
    for key in ("model.width", "model.arch", "method.name", "k", "seed", "recipe.lr", "recipe.epochs",
                "dataset.subset", "dataset.num_classes", "trainer.max_epochs", "eval.test_best"):
        assert not schema.is_result_neutral(key)


def test_the_config_hash_by_hand():
    """The hash is sha256 of the compact, key-sorted JSON of the config without its neutral keys, 16 hex digits."""
    import hashlib

    config = {"seed": 0, "model": {"width": 0.5, "arch": "vgg16"}, "paths": {"data_dir": "/d"}, "k": 3,
              "dataset": {"root": "/data", "name": "cifar10", "verify": True}, "trainer": {"log_every_n_steps": 5,
                                                                                       "max_epochs": 2}}
    blob = b'{"dataset":{"name":"cifar10"},"k":3,"model":{"arch":"vgg16","width":0.5},"seed":0,"trainer":{"max_epochs":2}}'
    assert config_hash(config) == hashlib.sha256(blob).hexdigest()[:16]


def test_neutral_keys_stay_out_of_the_run_directory_name():
    from hydra import compose, initialize_config_dir

    from spatialprobe import CONF_DIR

    overrides = ["dataset.root=/elsewhere", "dataset.verify=false", "dataset.download=false", "dataset.format=cifar",
                 "paths.data_dir=/d", "paths.cache_dir=/c", "resume=false", "dry_run=true", "name=x",
                 "experiment_name=y", "checkpoint.every_n_steps=3", "checkpoint.on_signal=false",
                 "debug.kill_at_step=5", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
                 "logger=wandb", "logger.mode=disabled", "logger.group=g", "k=0", "model.width=0.5"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.job.override_dirname == "k=0,model.width=0.5"
    excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert set(schema.RESULT_NEUTRAL_KEYS) <= excluded and all(schema.is_result_neutral(k) for k in excluded)


def test_plot_never_draws_a_neutral_key_as_a_curve_of_its_own():
    import pandas as pd

    from spatialprobe.report.figures import train_points

    rows = [{"model": "vgg16", "dataset": "cifar10", "method": "conv1x1", "k": k, "status": "complete", "params": 1,
             "test_top1": 50.0 - k, "config.dataset.root": f"/data{k}", "config.paths.data_dir": f"/p{k}",
             "config.dataset.verify": k % 2 == 0, "config.logger.name": ["csv", "wandb"][k % 2], "config.name": f"r{k}",
             "config.checkpoint.every_n_steps": k, "config.trainer.log_every_n_steps": k, "config.model.width": 0.25}
            for k in range(4)]
    points = train_points(pd.DataFrame(rows))
    assert set(points["line"]) == {"conv1x1"} and set(points["setting"]) == {""}
    rows[0]["config.model.width"] = 0.5  # a result-relevant key that varies is a curve of its own
    assert set(train_points(pd.DataFrame(rows))["setting"]) == {"width=0.5", "width=0.25"}


# --------------------------------------------------------------------------- the same run, wherever the data is
RUN = [*TINY, "dataset=cifar10", "recipe=cpu", "trainer.max_epochs=2", "trainer.deterministic=true",
       "recipe.batch_size=32"]
# every result-neutral key, changed; dataset.verify stays false (the fake batches have no published md5s)
ALL_NEUTRAL_CHANGED = ["dataset.format=cifar", "dataset.download=true", "paths.data_dir=/nowhere",
                       "resume=false", "dry_run=true", "cost.gpu=H100", "name=another", "experiment_name=another",
                       "logger=wandb", "logger.mode=disabled", "checkpoint.every_n_steps=1", "checkpoint.on_signal=false",
                       "checkpoint.on_unreadable=restart", "lock.heartbeat_s=5", "lock.stale_after_s=100",
                       "debug.only_jobs=[5]", "trainer.enable_progress_bar=true", "trainer.log_every_n_steps=50"]
NOT_CHANGED_IN_TRAINING = {"dataset.verify": "fake batches cannot match the published md5s",
                           "experiment": "a group choice: what it sets is in the config itself"}
RESULTS = ("steps", "epochs", "val_top1_final", "test_top1_final", "test_loss_final", "train_loss_final")


def train(run_dir, *overrides, cache):
    from spatialprobe.train import run

    cfg = compose_train(*RUN, f"paths.cache_dir={cache}", *overrides)
    return run(cfg, run_dir)


def state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def moved_data(fake_cifar10, tmp_path):
    moved = tmp_path / "moved" / "cifar10"
    shutil.copytree(fake_cifar10, moved)
    return moved


def test_changing_every_result_neutral_key_trains_the_same_network_bit_for_bit(fake_cifar10, tmp_path):
    covered = {o.split("=")[0].split(".")[0] if o.split("=")[0].split(".")[0] in schema.RESULT_NEUTRAL_KEYS
               else o.split("=")[0] for o in [*ALL_NEUTRAL_CHANGED, "dataset.root=", "paths.cache_dir="]}
    assert covered | set(NOT_CHANGED_IN_TRAINING) == set(schema.RESULT_NEUTRAL_KEYS)
    a = train(tmp_path / "a", f"dataset.root={fake_cifar10}", cache=tmp_path / "cache_a")
    b = train(tmp_path / "b", f"dataset.root={moved_data(fake_cifar10, tmp_path)}", *ALL_NEUTRAL_CHANGED,
              cache=tmp_path / "cache_b")
    assert a["status"] == b["status"] == "complete" and a["config_hash"] == b["config_hash"]
    assert {k: a[k] for k in RESULTS} == {k: b[k] for k in RESULTS}
    wa, wb = state(tmp_path / "a"), state(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_complete_run_rerun_with_its_data_elsewhere_is_skipped(fake_cifar10, tmp_path, capsys):
    first = train(tmp_path / "run", f"dataset.root={fake_cifar10}", cache=tmp_path / "cache")
    before = (tmp_path / "run" / "result.json").read_text()
    again = train(tmp_path / "run", f"dataset.root={moved_data(fake_cifar10, tmp_path)}", "dataset.verify=false",
                  cache=tmp_path / "cache2")
    assert "skipped, already complete" in capsys.readouterr().out
    assert again["config_hash"] == first["config_hash"] and (tmp_path / "run" / "result.json").read_text() == before


def test_a_killed_run_rerun_with_its_data_elsewhere_resumes_from_its_checkpoint(fake_cifar10, env, tmp_path):
    run_dir = tmp_path / "run"
    args = [*RUN, f"dataset.root={fake_cifar10}", "checkpoint.every_n_steps=2", "debug.kill_at_step=3",
            f"hydra.run.dir={run_dir}"]
    p = subprocess.run([sys.executable, "-m", "spatialprobe.train", *args], env=dict(env, OMP_NUM_THREADS="1"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and json.loads((run_dir / "result.json").read_text())["status"] == "running"
    saved_step = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert saved_step == 2
    done = train(run_dir, f"dataset.root={moved_data(fake_cifar10, tmp_path)}", "checkpoint.every_n_steps=2",
                 cache=tmp_path / "cache")
    assert done["status"] == "complete" and done["attempts"] == 2  # the same run, resumed
    logged = (run_dir / "logs" / "attempt-2" / "metrics.csv").read_text().splitlines()
    first_step = int(logged[1].split(",")[logged[0].split(",").index("step")])
    assert first_step >= saved_step  # it went on from step 2, not from scratch


def test_a_record_written_before_a_key_became_neutral_still_matches_its_run(tmp_path):
    from spatialprobe.run.records import RunRecord, write_json_atomic

    config = OmegaConf.to_container(compose_train(), resolve=True)
    write_json_atomic(tmp_path / "result.json", {"status": "complete", "config_hash": "an-old-rule", "config": config})
    assert RunRecord(tmp_path).is_complete_for(config_hash(put(config, "dataset.root", "/moved")))


def test_the_sweeps_page_lists_the_result_neutral_keys():
    """docs/sweeps.md, "Keys that do not change a result", names every key of the one list."""
    text = (REPO / "docs" / "sweeps.md").read_text()
    section = text[text.index("Keys that do not change a result"):][:1500]
    for key in schema.RESULT_NEUTRAL_KEYS:
        assert f"`{key}`" in section, key

