"""ImageNet as class folders: transforms, workers, class numbering, bad layouts; the ImageNet recipe."""

from __future__ import annotations

import pytest
import torch

from conftest import compose_train
from fakeimagenet import make_jpeg_folders
from spatialprobe.data import build_datamodule
from spatialprobe.errors import ConfigError, DataError
from spatialprobe.tasks.base import build_optimizer, build_scheduler, effective_lr
from spatialprobe.train import validate


def imagenet_cfg(root, *extra):
    return compose_train("dataset=imagenet", f"dataset.root={root}", "dataset.num_classes=3", "dataset.num_workers=0",
                         "recipe=imagenet", "recipe.batch_size=4", *extra)


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    return make_jpeg_folders(tmp_path_factory.mktemp("imagenet") / "ilsvrc", num_classes=3, train=4, val=2)


def batches(dm, split):
    loader = getattr(dm, f"{split}_dataloader")()
    return [dm.on_after_batch_transfer(b, 0) for b in loader]


def test_train_and_eval_batches_are_224_and_normalised(fake_imagenet):
    cfg = imagenet_cfg(fake_imagenet)
    validate(cfg)
    dm = build_datamodule(cfg)
    assert dm.sizes() == {"train": 12, "val": 6, "test": 6} and dm.classes == ["n00000000", "n00000001", "n00000002"]
    train = batches(dm, "train")
    assert len(train) == 3 and all(x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 for x, _ in train)
    assert sorted(torch.cat([y for _, y in train]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    val = batches(dm, "val")
    x, y = torch.cat([b[0] for b in val]), torch.cat([b[1] for b in val])
    assert x.shape == (6, 3, 224, 224) and y.tolist() == [0, 0, 1, 1, 2, 2]
    # evaluation is deterministic (resize 256 + centre crop); normalised values are roughly centred
    assert torch.equal(x, torch.cat([b[0] for b in batches(dm, "val")]))
    assert -3 < x.mean() < 3 and x.std() > 0.1


def test_val_classes_are_numbered_like_train(tmp_path):
    root = make_jpeg_folders(tmp_path / "i", num_classes=3, train=2, val=1)
    for f in (root / "val" / "n00000000").iterdir():  # val lacks the first class: labels must not shift
        f.unlink()
    (root / "val" / "n00000000").rmdir()
    dm = build_datamodule(imagenet_cfg(root))
    assert torch.cat([y for _, y in batches(dm, "val")]).tolist() == [1, 2]
    (root / "val" / "n09999999").mkdir()
    with pytest.raises(DataError, match=r"classes missing from the training set: n09999999"):
        build_datamodule(imagenet_cfg(root))


def test_worker_processes_and_seeded_order(fake_imagenet):
    dm = build_datamodule(imagenet_cfg(fake_imagenet, "dataset.num_workers=1", "dataset.augment=false"))
    loader = dm.train_dataloader()
    assert loader.num_workers == 1 and loader.persistent_workers
    first = torch.cat([y for _, y in loader])
    again = torch.cat([y for _, y in build_datamodule(imagenet_cfg(fake_imagenet)).train_dataloader()])
    assert torch.equal(first, again)  # order from (seed, epoch), whatever the number of workers


def test_subset_and_held_out_validation(fake_imagenet):
    dm = build_datamodule(imagenet_cfg(fake_imagenet, "dataset.subset=5", "dataset.val_size=4"))
    assert dm.sizes() == {"train": 5, "val": 4, "test": 5}
    train_files = {dm.sets["train"].dataset.samples[i][0] for i in dm.sets["train"].indices}
    val_files = {dm.sets["val"].dataset.samples[i][0] for i in dm.sets["val"].indices}
    assert not train_files & val_files and all("/train/" in f for f in val_files)


def test_folder_without_class_subfolders(tmp_path):
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "train" / "img1.JPEG").write_bytes(b"x")
    with pytest.raises(DataError, match=r"flat/train: no class sub-folders; ImageNet must be laid out as "
                                        r"<root>/train/<wnid>/.*found: img1.JPEG"):
        build_datamodule(imagenet_cfg(tmp_path / "flat"))
    with pytest.raises(DataError, match=r"nothing/train: no such directory"):
        (tmp_path / "nothing").mkdir()
        build_datamodule(imagenet_cfg(tmp_path / "nothing"))


def test_resize_smaller_than_crop_is_rejected(fake_imagenet):
    with pytest.raises(ConfigError) as err:
        validate(imagenet_cfg(fake_imagenet, "dataset.resize_size=200"))
    assert err.value.key == "dataset.resize_size"


def test_imagenet_recipe_scales_lr_with_the_global_batch():
    recipe = dict(compose_train("recipe=imagenet").recipe)
    assert (recipe["lr"], recipe["momentum"], recipe["weight_decay"], recipe["epochs"]) == (0.1, 0.9, 1e-4, 90)
    assert effective_lr(recipe) == pytest.approx(0.1)  # batch 256
    assert effective_lr(recipe | {"batch_size": 512}) == pytest.approx(0.2)
    assert effective_lr(recipe, world_size=8) == pytest.approx(0.8)  # 256 per device on 8 devices
    assert effective_lr(recipe | {"lr_scale_batch": None, "batch_size": 64}) == pytest.approx(0.1)
    assert effective_lr(dict(compose_train("recipe=cifar").recipe)) == 0.1  # no scaling key: unchanged
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], recipe | {"batch_size": 128})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05) and opt.param_groups[0]["weight_decay"] == 1e-4
    sched = build_scheduler(opt, recipe, epochs=90, total_steps=90)["scheduler"]  # one step per epoch
    lrs = []
    for _ in range(90):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [i for i in range(1, 90) if lrs[i] < lrs[i - 1]] == [30, 60]  # x0.1 every 30 epochs
    assert lrs[-1] == pytest.approx(0.05 * 0.01)


def test_consistency_test_batches_carry_real_image_context(fake_imagenet):
    """eval.consistency on ImageNet: the test images are centre-cropped 224 + S px; each test batch holds the
    usual 224 px crop (the same as without Cons.S) and the larger crop its shifted views are cut from."""
    plain = build_datamodule(imagenet_cfg(fake_imagenet))
    dm = build_datamodule(imagenet_cfg(fake_imagenet, "eval.consistency=[8,16]"))
    assert dm.context == 8
    dm.trainer = type("T", (), {"testing": True, "current_epoch": 0, "global_rank": 0, "world_size": 1})()
    x, y, context = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert x.shape == (4, 3, 224, 224) and context.shape == (4, 3, 240, 240)
    assert torch.equal(context[..., 8:232, 8:232], x)
    reference, _ = plain.on_after_batch_transfer(next(iter(plain.test_dataloader())), 0)
    assert torch.allclose(x, reference, atol=1e-5)  # top-1 is measured on the same pixels as without Cons.S
    dm.trainer.testing = False  # validation batches are unchanged
    assert len(dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)) == 2
