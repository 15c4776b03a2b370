"""P 4.2 end to end on the fake Cityscapes fixture: DeepLabv3-ResNet-50 trained with task=segment (or a user's
state dict), then ranked (val, val-left / val-right, three variants, rank ranges) and attacked, with the figures."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import compose_train
from fakedata import make_cityscapes
from spatialprobe import CONF_DIR
from spatialprobe.errors import ConfigError

SMALL = ["dataset.base_size=32", "dataset.crop_size=32", "dataset.num_workers=0", "recipe.batch_size=2",
         "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"), per_split=4, pedestrians=["left", "right", "both", None])


def compose_rank(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("rank", overrides=list(overrides))


def attack_args(root, checkpoint) -> list[str]:
    return ["source=segmentation", f"checkpoint={checkpoint}", f"segmentation.root={root}", "batch_size=2",
            "ranking=[overall,left,right]", "variant=[image_flip,kernel_flip_image,kernel_flip]", "top_n=[4,64]",
            "random_draws=2", "rank_ranges=[[1,4],[5,8]]", "fig5.images=1", "fig5.top_n=64"]


@pytest.mark.slow
def test_deeplab_trained_with_the_segment_task_is_ranked_and_attacked(cityscapes, tmp_path, monkeypatch):
    from spatialprobe import rank
    from spatialprobe.data import cityscapes as segmentation
    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    rec = run(compose_train("experiment=deeplabv3_resnet50_cityscapes", f"dataset.root={cityscapes}", *SMALL),
              tmp_path / "run")
    assert rec["status"] == "complete" and rec["task"] == "segment" and rec["model"] == "deeplabv3_resnet50"
    assert rec["params"] == 42_003_046 and rec["units"] == 16  # torchvision's network with its aux head, 19 classes
    assert 0.0 <= rec["test_miou"] <= 100.0 and rec["val_miou_best"] is not None and rec["val_top1_best"] is None
    assert rec["data_sizes"] == {"train": 4, "val": 4, "test": 4}

    sides = []
    real = segmentation.CityscapesBatches

    def spy(*args, **kwargs):
        sides.append((args[1] if len(args) > 1 else kwargs.get("split"), kwargs.get("side")))
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "CityscapesBatches", spy)
    record = rank.run(compose_rank(*attack_args(cityscapes, tmp_path / "run" / "checkpoints" / "last.ckpt")))
    # the rankings read P's val split: all of it for overall, val-left / val-right for the region rankings
    assert {("val", None), ("val", "left"), ("val", "right")} <= set(sides)
    assert record["model"] == "deeplabv3_resnet50" and record["latent_size"] == 2048 and record["metric"] == "miou"
    assert set(record["rankings"]) == {f"{r}/{v}" for r in ("overall", "left", "right")
                                       for v in ("image_flip", "kernel_flip_image", "kernel_flip")}
    one = record["rankings"]["left/kernel_flip_image"]
    assert sorted(one["ranked_channels"]) == list(range(2048)) and set(one["top"]) == {"4", "64"}
    assert set(one["ranges"]) == {"1-4", "5-8"} and set(one["ranges"]["1-4"]) == {"overall", "left", "centre", "right"}
    folder = tmp_path / "run" / "checkpoints" / ("position-overall+left+right-image_flip+kernel_flip_image+kernel_flip"
                                                 "-figures")
    for name in ("fig4_top", "fig4_bottom", "fig6", "fig6_right"):
        for ext in ("png", "pdf", "md"):
            assert (folder / f"{name}.{ext}").stat().st_size > 0
    assert (folder / "fig5_00.png").is_file() and not (folder / "fig5_01.png").exists()
    assert "| left | 64 |" in (folder / "fig6.md").read_text()


@pytest.mark.slow
def test_a_users_deeplab_state_dict_is_attacked_on_the_fixture(cityscapes, tmp_path):
    from spatialprobe import rank
    from spatialprobe.position.segmentation import build_deeplab

    torch.manual_seed(0)
    weights = tmp_path / "deeplab.pth"
    torch.save({"model_state": build_deeplab(19).state_dict()}, weights)  # as DeepLabV3Plus-Pytorch saves it
    out = tmp_path / "attack.json"
    record = rank.run(compose_rank("source=segmentation", f"checkpoint={weights}", f"segmentation.root={cityscapes}",
                                   "batch_size=2", "ranking=right", "top_n=[64]", "random_draws=2",
                                   "segmentation.size=[16,32]", f"output={out}", "figures=false"))
    saved = json.loads(out.read_text())
    assert saved["ranking"] == "right" and saved["latent_size"] == 2048 and set(saved["switch_off"]) == {"64"}
    assert set(saved["baseline"]) == {"overall", "left", "centre", "right"} and record["scores"] == saved["scores"]


def test_segmentation_checks_before_anything_runs():
    from spatialprobe.train import validate

    with pytest.raises(ConfigError) as err:  # a classification data set with the segmentation task
        validate(compose_train("task=segment"))
    assert err.value.key == "task.name" and "dataset=cityscapes" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate(compose_train("experiment=deeplabv3_resnet50_cityscapes", "model.width=0.5"))
    assert err.value.key == "model.width"
    from spatialprobe.rank import validate as validate_rank

    for bad, key in (("ranking=[overall,up]", "ranking"), ("variant=mirror", "variant"),
                     ("rank_ranges=[[5,1]]", "rank_ranges"), ("ranking=[left,left]", "ranking")):
        with pytest.raises(ConfigError) as err:
            validate_rank(compose_rank("source=segmentation", bad))
        assert err.value.key == key


def test_segmenter_recipe_aux_head_at_ten_times_the_lr_and_the_poly_schedule():
    from spatialprobe import tasks
    from spatialprobe.models import build_model

    cfg = compose_train("experiment=deeplabv3_resnet50_cityscapes", "recipe.epochs=2")
    torch.manual_seed(0)
    model = build_model(cfg.model, 19, 32)
    module = tasks.get(cfg).module(cfg, model, {}, steps_per_epoch=5)
    module.trainer = type("T", (), {"world_size": 1, "max_epochs": 2, "accumulate_grad_batches": 1,
                                    "limit_train_batches": None})()
    out = module.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = [g["lr"] for g in opt.param_groups]
    base = 0.02 * 4 / 32  # 0.02 per 32 images, batch 4 on one device
    assert lrs == pytest.approx([base, 10 * base])
    aux = {id(p) for p in model.body.aux_classifier.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == aux
    assert out["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[3] == pytest.approx(base * (1 - 3 / 10) ** 0.9) and opt.param_groups[0]["lr"] == pytest.approx(0.0)
    assert OmegaConf.select(cfg, "segment.aux_weight") == 0.5
