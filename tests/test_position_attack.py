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
         "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
         "trainer.precision=32-true"]


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


def pooled_flip_scores(model, batches, signed=False):
    """P Eq. 2 / 3 by hand from the backbone: mean over images of (|) pool(f(x)) - pool(f(flip x)) (|)."""
    with torch.no_grad():
        diffs = [model.backbone(x)["out"].mean(dim=(2, 3)) - model.backbone(x.flip(-1))["out"].mean(dim=(2, 3))
                 for x in batches]
    d = torch.cat(diffs)
    return (d if signed else d.abs()).mean(0)


def test_a_users_deeplab_state_dict_is_attacked_on_the_fixture(cityscapes, tmp_path):
    """A state dict as DeepLabV3Plus-Pytorch saves it (``model_state``, DDP's ``module.`` prefixes, an aux head
    that is dropped) is the network that is ranked and attacked: the record's scores and baseline are those of
    the saved network computed here by hand, not of a fresh one; ``segmentation.probe_split=train`` ranks on
    the training images (P ranks on val, the default)."""
    from spatialprobe import rank
    from spatialprobe.data.cityscapes import CityscapesBatches
    from spatialprobe.position.segmentation import RegionIoU, build_deeplab

    torch.manual_seed(0)
    saved = build_deeplab(19)
    weights = tmp_path / "deeplab.pth"
    state = {f"module.{k}": v for k, v in saved.state_dict().items()}
    state["module.aux_classifier.4.weight"] = torch.zeros(19, 256, 1, 1)  # from a model trained with aux_loss
    torch.save({"model_state": state, "optimizer_state": {}, "cur_itrs": 30000}, weights)
    out = tmp_path / "attack.json"
    common = ["source=segmentation", f"checkpoint={weights}", f"segmentation.root={cityscapes}", "batch_size=2",
              "top_n=[64]", "random_draws=1", "segmentation.size=[16,32]", "figures=false"]
    torch.manual_seed(1)  # a network the file did not come from would differ from ``saved``
    record = rank.run(compose_rank(*common, "ranking=right", f"output={out}"))
    saved_record = json.loads(out.read_text())
    assert saved_record["ranking"] == "right" and saved_record["latent_size"] == 2048
    assert set(saved_record["switch_off"]) == {"64"} and record["scores"] == saved_record["scores"]
    val_right = [x for x, _, _ in CityscapesBatches(cityscapes, "val", 2, [16, 32], side="right")]
    assert len(torch.cat(val_right)) == 1  # the fixture's val-right subset: one image
    expected = pooled_flip_scores(saved, val_right, signed=True)
    assert torch.allclose(torch.tensor(record["scores"]), expected, atol=2e-6)
    miou = RegionIoU(19)
    with torch.no_grad():
        for x, y, _ in CityscapesBatches(cityscapes, "val", 2, [16, 32]):
            miou.update(saved(x)["out"], y)
    assert record["baseline"] == pytest.approx(miou.compute(), abs=1e-4)

    train = rank.run(compose_rank(*common, "ranking=overall", "segmentation.probe_split=train", "probe_images=4",
                                  f"output={tmp_path / 'train.json'}"))
    on_train = pooled_flip_scores(saved, [x for x, _, _ in CityscapesBatches(cityscapes, "train", 2, [16, 32])])
    on_val = pooled_flip_scores(saved, [x for x, _, _ in CityscapesBatches(cityscapes, "val", 2, [16, 32])])
    assert torch.allclose(torch.tensor(train["scores"]), on_train, atol=2e-6)
    assert not torch.allclose(on_train, on_val, atol=1e-4)  # the split is seen in the scores
    assert train["config"]["segmentation"]["probe_split"] == "train"


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


def test_segment_loss_is_the_pixel_cross_entropy_plus_half_the_aux_head_s_ignoring_unlabelled():
    """docs/position.md: "cross-entropy ignoring unlabelled pixels + 0.5 x the auxiliary head's" while training;
    evaluation scores the main head only. By hand on two pixels, the second unlabelled (255)."""
    import math

    from spatialprobe.tasks.segment import Segmenter

    class Fixed(torch.nn.Module):
        def forward(self, x):
            out = torch.tensor([[0.0, math.log(3.0)], [5.0, -5.0]]).T.reshape(1, 2, 1, 2)  # pixel 0: p(1) = 3/4
            aux = torch.zeros(1, 2, 1, 2)                                                  # pixel 0: p(1) = 1/2
            return {"out": out, "aux": aux}

    module = Segmenter(Fixed(), 2, {"lr": 0.1}, aux_weight=0.5)
    batch = (torch.zeros(1, 3, 1, 2), torch.tensor([[[1, 255]]]))
    assert float(module.step(batch, "train")) == pytest.approx(math.log(4 / 3) + 0.5 * math.log(2), abs=1e-6)
    assert float(module.step(batch, "val")) == pytest.approx(math.log(4 / 3), abs=1e-6)
    assert float(Segmenter(Fixed(), 2, {"lr": 0.1}, aux_weight=0.0).step(batch, "train")) == pytest.approx(
        math.log(4 / 3), abs=1e-6)


def test_segment_training_augmentation_is_the_segmentation_reference_s(cityscapes):
    """docs/position.md: random resize of the short side to 0.5-2.0 x base_size, flip, crop_size crop (padded with
    black pixels / unlabelled); evaluation only resizes to base_size. The pipeline built for
    experiment=deeplabv3_resnet50_cityscapes with base_size 32, crop 24, and what it does to an image whose left
    half is black / class 1 and right half white / class 2."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from spatialprobe.data.cityscapes import transforms

    ds = compose_train("experiment=deeplabv3_resnet50_cityscapes", f"dataset.root={cityscapes}",
                       "dataset.base_size=32", "dataset.crop_size=24").dataset
    resize, flip, crop = transforms(True, ds).transforms
    assert isinstance(resize, v2.RandomResize) and (resize.min_size, resize.max_size) == (16, 64)
    assert isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(crop, v2.RandomCrop) and crop.size == (24, 24) and crop.pad_if_needed
    (evaluation,) = transforms(False, ds).transforms
    assert isinstance(evaluation, v2.Resize) and evaluation.size == [32]
    image = torch.zeros(3, 32, 64, dtype=torch.uint8)
    image[:, :, 32:] = 255
    mask = torch.ones(1, 32, 64, dtype=torch.long)
    mask[:, :, 32:] = 2
    torch.manual_seed(0)
    flipped = padded = 0
    for _ in range(40):
        x, y = transforms(True, ds)(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert x.shape == (3, 24, 24) and y.shape == (1, 24, 24)
        assert set(y.unique().tolist()) <= {1, 2, 255}
        pad = y[0] == 255
        padded += bool(pad.any())
        assert (x[:, pad] == 0).all()  # padding: black pixels, unlabelled
        if (y[0] == 1).any() and (y[0] == 2).any():
            assert x[:, y[0] == 1].float().mean() < 64 < 192 < x[:, y[0] == 2].float().mean()  # they moved together
            cols = torch.arange(24).expand(24, 24)
            flipped += bool(cols[y[0] == 2].float().mean() < cols[y[0] == 1].float().mean())  # white on the left
    assert flipped > 0 and padded > 0  # mirrored crops, and short sides below 24 px, both occur
