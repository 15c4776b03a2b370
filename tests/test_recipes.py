"""Training recipes: each ImageNet architecture's original recipe, the CIFAR recipe's source, and the
optimisers and learning-rate schedules they need (RMSprop, per-epoch exponential, polynomial, warm-up)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train
from spatialprobe import CONF_DIR
from spatialprobe.config.schema import check_recipe as validate_recipe
from spatialprobe.errors import ConfigError
from spatialprobe.tasks.base import build_optimizer, build_scheduler, effective_lr

# experiment -> (recipe, the original paper its file must name)
IMAGENET = {
    "resnet50_imagenet_kcurve": ("resnet_imagenet", "He et al. 2016"),
    "resnet152_imagenet_kcurve": ("resnet_imagenet", "He et al. 2016"),
    "vgg16_imagenet_kcurve": ("vgg16_imagenet", "Simonyan & Zisserman"),
    "mobilenet_v2_imagenet_kcurve": ("mobilenet_v2_imagenet", "Sandler et al. 2018"),
    "squeezenet_imagenet_kcurve": ("squeezenet_imagenet", "Iandola et al. 2016"),
}


def lr_per_step(recipe: dict, epochs: int, per_epoch: int, world_size: int = 1) -> list[float]:
    """The learning rate of every optimiser step of a run, as Lightning would step the schedule."""
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], recipe, world_size)
    scheduler = build_scheduler(opt, recipe, epochs, epochs * per_epoch)
    assert scheduler is None or scheduler["interval"] == "step"
    lrs = []
    for _ in range(epochs * per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler:
            scheduler["scheduler"].step()
    return lrs


def drops(lrs: list[float], per_epoch: int) -> list[int]:
    """The epochs at whose start the learning rate fell."""
    return [i // per_epoch for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1] * 0.999]


@pytest.mark.parametrize("experiment", sorted(IMAGENET))
def test_every_imagenet_experiment_uses_its_architectures_recipe(experiment):
    recipe, source = IMAGENET[experiment]
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.recipe.name == recipe
    validate_recipe(cfg)
    assert source in (CONF_DIR / "recipe" / f"{recipe}.yaml").read_text()


def test_resnet_recipe_he_et_al():
    r = dict(compose_train("recipe=resnet_imagenet").recipe)
    assert (r["optimizer"], r["lr"], r["momentum"], r["weight_decay"], r["batch_size"]) == ("sgd", 0.1, 0.9, 1e-4, 256)
    lrs = lr_per_step(r, 90, 2)
    assert drops(lrs, 2) == [30, 60] and lrs[-1] == pytest.approx(0.1 * 0.01)


def test_vgg_recipe_simonyan_zisserman():
    r = dict(compose_train("recipe=vgg16_imagenet").recipe)
    assert (r["lr"], r["momentum"], r["weight_decay"], r["batch_size"], r["epochs"]) == (0.01, 0.9, 5e-4, 256, 74)
    lrs = lr_per_step(r, 74, 2)
    assert drops(lrs, 2) == [18, 37, 56] and lrs[-1] == pytest.approx(1e-5)  # decreased 3 times by 10


def test_mobilenet_v2_recipe_rmsprop_and_per_epoch_decay():
    r = dict(compose_train("recipe=mobilenet_v2_imagenet").recipe)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], r)
    assert isinstance(opt, torch.optim.RMSprop)
    group = opt.param_groups[0]
    assert (group["lr"], group["alpha"], group["momentum"], group["eps"], group["weight_decay"]) == (
        0.045, 0.9, 0.9, 1.0, 4e-5)
    assert r["batch_size"] == 96 and effective_lr(r, world_size=8) == 0.045  # not scaled with devices
    lrs = lr_per_step(r, 5, 3)
    assert [lrs[e * 3] for e in range(5)] == pytest.approx([0.045 * 0.98 ** e for e in range(5)])
    assert lrs[3 * 2 + 1] == lrs[3 * 2]  # constant inside an epoch


def test_squeezenet_recipe_linear_polynomial_decay():
    r = dict(compose_train("recipe=squeezenet_imagenet").recipe)
    assert effective_lr(r) == pytest.approx(0.01) and effective_lr(r, world_size=4) == pytest.approx(0.04)
    lrs = lr_per_step(r, 4, 5)
    assert lrs == pytest.approx([0.01 * (1 - s / 20) for s in range(20)])
    sqrt = lr_per_step(r | {"poly_power": 0.5}, 4, 5)  # the released Caffe solver's power
    assert sqrt[10] == pytest.approx(0.01 * 0.5 ** 0.5)


def test_cifar_recipe_warm_up_then_steps():
    """The CIFAR recipe (weiaicunzai/pytorch-cifar100): 1 epoch linear warm-up, x0.2 at 60/120/160 of 200."""
    r = dict(compose_train("recipe=cifar").recipe)
    per_epoch = 4
    lrs = lr_per_step(r, 200, per_epoch)
    assert lrs[:per_epoch + 1] == pytest.approx([0.1 * (s + 1) / per_epoch for s in range(per_epoch)] + [0.1])
    assert drops(lrs, per_epoch) == [60, 120, 160]
    assert lrs[-1] == pytest.approx(0.1 * 0.2 ** 3)
    # warm-up composes with the decays too, and the decay starts after it
    poly = lr_per_step(r | {"schedule": "poly", "poly_power": 1.0, "warmup_epochs": 1}, 3, 4)
    assert poly[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1]) and poly[-1] < poly[5] < 0.1


@pytest.mark.parametrize("override,key", [
    ("recipe.optimizer=adagrad", "recipe.optimizer"),
    ("recipe.schedule=linear", "recipe.schedule"),
    ("recipe.warmup_epochs=-1", "recipe.warmup_epochs"),
    ("recipe.gamma=0", "recipe.gamma"),
    ("recipe.momentum=2", "recipe.momentum"),
])
def test_bad_recipe_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate_recipe(compose_train("recipe=cifar", override))
    assert err.value.key == key


@pytest.mark.parametrize("recipe,override,key", [
    ("squeezenet_imagenet", "recipe.poly_power=0", "recipe.poly_power"),
    ("segmentation", "recipe.poly_power=-1", "recipe.poly_power"),
    ("mobilenet_v2_imagenet", "recipe.eps=0", "recipe.eps"),
    ("mobilenet_v2_imagenet", "recipe.alpha=1.5", "recipe.alpha"),
    ("cpu", "+recipe.warmup_epochs=1", "recipe.warmup_epochs"),  # one-cycle has its own warm-up
])
def test_bad_values_of_the_new_optimisers_and_schedules(recipe, override, key):
    with pytest.raises(ConfigError) as err:
        validate_recipe(compose_train(f"recipe={recipe}", override))
    assert err.value.key == key


def test_readme_and_cifar_recipe_name_the_source():
    text = (CONF_DIR / "recipe" / "cifar.yaml").read_text()
    assert "give no hyper-parameters" in text and "weiaicunzai/pytorch-cifar100" in text
    assert OmegaConf.load(CONF_DIR / "recipe" / "cifar.yaml").warmup_epochs == 1


@pytest.mark.parametrize("recipe", ["cifar", "mobilenet_v2_imagenet", "squeezenet_imagenet"])
def test_schedule_resumes_from_its_state_dict(recipe):
    """A run resumed from a checkpoint (optimiser + scheduler state) continues the same lr sequence,
    warm-up and per-epoch decay included."""
    r = dict(compose_train(f"recipe={recipe}").recipe)
    epochs, per_epoch = 6, 4
    whole = lr_per_step(r, epochs, per_epoch)

    def fresh():
        opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], r)
        return opt, build_scheduler(opt, r, epochs, epochs * per_epoch)["scheduler"]

    opt, sched = fresh()
    for _ in range(7):  # killed mid-epoch, during the warm-up's second epoch
        opt.step()
        sched.step()
    state = (opt.state_dict(), sched.state_dict())
    opt, sched = fresh()
    opt.load_state_dict(state[0])
    sched.load_state_dict(state[1])
    rest = []
    for _ in range(7, epochs * per_epoch):
        rest.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rest == pytest.approx(whole[7:])
