"""Every config composes and validates; bad group choices are one line before Hydra runs."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import compose_train
from spatialprobe import CONF_DIR
from spatialprobe.config.cli import check_group_overrides, group_choices
from spatialprobe.errors import ConfigError
from spatialprobe.train import validate

GROUPS = ["dataset", "model", "method", "recipe", "task", "trainer", "logger"]


def companions(group: str, option: str) -> list[str]:
    """What an option needs beside it: segmentation's data set, model and task come as one experiment;
    detection data sets go with task=detect and the other way round."""
    if (group, option) in COMPANIONS:
        return COMPANIONS[group, option]
    if group == "dataset" and "kind: detect" in (CONF_DIR / "dataset" / f"{option}.yaml").read_text():
        return ["task=detect"]
    return ["dataset=cifar10_detect"] if (group, option) == ("task", "detect") else []


def own_values(path) -> dict:
    """The leaf values a yaml file sets itself (no defaults list, no interpolations), dotted keys."""
    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            elif not (isinstance(value, str) and "${" in value):
                yield f"{prefix}{key}", value

    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    data.pop("defaults", None)
    return dict(walk(data))


# options that only work together with others (segmentation: its data set, model and task come as one)
COMPANIONS = {("dataset", "cityscapes"): ["experiment=deeplabv3_resnet50_cityscapes"],
              ("model", "deeplabv3_resnet50"): ["experiment=deeplabv3_resnet50_cityscapes"],
              ("task", "segment"): ["experiment=deeplabv3_resnet50_cityscapes"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_choices(g)])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_train(*companions(group, option), f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    validate(cfg)
    # the composed group is the chosen file: every value it sets itself arrives unchanged
    path = CONF_DIR / group / f"{option}.yaml"
    own = own_values(path)
    assert own, f"conf/{group}/{option}.yaml sets nothing of its own"
    root = cfg if "@package _global_" in path.read_text() else cfg[group]  # task files write at the top level
    composed = {key: OmegaConf.select(root, key) for key in own}
    composed = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in composed.items()}
    assert composed == own


def test_defaults_are_the_cifar_recipe():
    """The papers give no CIFAR hyper-parameters; the default recipe is weiaicunzai/pytorch-cifar100's
    (conf/recipe/cifar.yaml names it): SGD 0.1, wd 5e-4, batch 128, x0.2 at 60/120/160 of 200, 1 warm-up epoch."""
    cfg = compose_train()
    assert cfg.recipe.name == "cifar" and cfg.recipe.warmup_epochs == 1
    assert (cfg.recipe.lr, cfg.recipe.momentum, cfg.recipe.weight_decay, cfg.recipe.batch_size) == (0.1, 0.9, 5e-4, 128)
    assert cfg.trainer.max_epochs == 200 and [round(f * 200) for f in cfg.recipe.milestones] == [60, 120, 160]
    assert cfg.k == 0 and cfg.seed == 0 and cfg.method.name == "none"


def test_unknown_group_option_is_one_clear_error():
    with pytest.raises(ConfigError) as err:
        check_group_overrides(["model=resnet999", "k=0"])
    msg = str(err.value)
    assert "model='resnet999'" in msg and "resnet18" in msg and "vgg16" in msg
    check_group_overrides(["model=vgg16,resnet18", "method=none", "model.width=0.5", "k=range(0,3)"])
    with pytest.raises(ConfigError, match="dataset='cifar1000'"):
        check_group_overrides(["-m", "dataset=cifar10,cifar1000"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("model.width=0", "model.width"),
        ("model.width=-1", "model.width"),
        ("dataset.subset=0", "dataset.subset"),
        ("recipe.batch_size=0", "recipe.batch_size"),
        ("recipe.optimizer=adagrad", "recipe.optimizer"),
        ("recipe.schedule=linear", "recipe.schedule"),
        ("model.stem=huge", "model.stem"),
        ("dataset.format=zip", "dataset.format"),
        ("k=-1", "k"),
        ("k=3", "k"),  # method=none modifies nothing
    ],
)
def test_bad_values_name_key_and_choices(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_train(override))
    assert err.value.key == key
