"""The grid task (SPEC part B): pasting, placement, targets, regions, the datamodule and its config keys."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CIFAR10_JPG, compose_train, needs_shared_cifar
from spatialprobe.data import build_datamodule
from spatialprobe.data.grid import GridDataModule, fixed_cells, paste, region_of
from spatialprobe.errors import ConfigError

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def grid_cfg(root, tmp_path, **ds):
    cfg = compose_train("dataset=grid_cifar10", f"dataset.root={root}", "dataset.verify=false",
                        "dataset.download=false", f"paths.cache_dir={tmp_path / 'cache'}", "recipe.batch_size=8",
                        *[f"dataset.{k}={v}" for k, v in ds.items()])
    cfg.dataset.mean, cfg.dataset.std = MEAN, STD
    return cfg


def test_paste_puts_the_image_exactly_in_its_cell_and_zeros_elsewhere():
    n, b = 3, 9
    images = torch.rand(b, 3, 4, 5) + 1.0  # never 0
    cells = torch.arange(b)  # every cell once
    out = paste(images, cells, n)
    assert out.shape == (b, 3, 12, 15)
    for i in range(b):
        r, c = divmod(i, n)  # row-major
        window = out[i, :, 4 * r:4 * r + 4, 5 * c:5 * c + 5]
        assert torch.equal(window, images[i])
        rest = out[i].clone()
        rest[:, 4 * r:4 * r + 4, 5 * c:5 * c + 5] = 0
        assert not rest.any()


def test_regions_follow_the_column_of_the_cell():
    assert region_of(torch.arange(9), 3).tolist() == [0, 1, 2] * 3            # left / centre / right
    assert region_of(torch.arange(4), 2).tolist() == [0, 2, 0, 2]             # no centre column
    assert region_of(torch.arange(25), 5).tolist()[:5] == [0, 0, 1, 2, 2]
    assert region_of(torch.zeros(1, dtype=torch.long), 1).tolist() == [1]


def test_grid_config_derives_classes_and_size():
    cfg = compose_train("dataset=grid_cifar10", "dataset.grid=5")
    assert (cfg.dataset.num_classes, cfg.dataset.image_size) == (25, 160)
    cfg = compose_train("dataset=grid_cifar10", "dataset.grid=7", "dataset.target=class")
    assert (cfg.dataset.num_classes, cfg.dataset.image_size) == (10, 224)


def test_location_batches_place_each_image_in_the_cell_it_is_labelled_with(fake_cifar10, tmp_path):
    cfg = grid_cfg(fake_cifar10, tmp_path, grid=3, augment=False)
    dm = build_datamodule(cfg)
    assert isinstance(dm, GridDataModule)
    dm.setup()
    images = dm.tensors["train"][0]
    originals = {tuple(dm.grid_loader("train").base.normalise(images[i:i + 1]).flatten()[:20].tolist()): i
                 for i in range(len(images))}
    seen = torch.zeros(9)
    for x, y in dm.train_dataloader():
        assert x.shape[1:] == (3, 96, 96) and y.max() < 9
        for xi, yi in zip(x, y, strict=True):
            r, c = divmod(int(yi), 3)
            cell = xi[:, 32 * r:32 * r + 32, 32 * c:32 * c + 32]
            assert tuple(cell.flatten()[:20].tolist()) in originals  # a whole source image sits there
            rest = xi.clone()
            rest[:, 32 * r:32 * r + 32, 32 * c:32 * c + 32] = 0
            assert not rest.any()
            seen[yi] += 1
    assert (seen > 0).all()  # placement is random over all cells


@pytest.mark.parametrize("augment", [True, False])
def test_grid_training_flips_the_pasted_image_and_never_crops_it(augment, fake_cifar10, tmp_path):
    """docs/position.md: `dataset.augment` is a horizontal flip of the pasted image, as in the paper (no crop:
    the placement is the task). Every training cell holds a whole source image, as it is or mirrored; with
    augment both occur, without it none is mirrored."""
    dm = build_datamodule(grid_cfg(fake_cifar10, tmp_path, grid=2, augment=augment))
    dm.setup()
    normalised = dm.grid_loader("train").base.normalise(dm.tensors["train"][0])
    plain = {normalised[i].numpy().tobytes() for i in range(len(normalised))}
    mirrored = {normalised[i].flip(-1).numpy().tobytes() for i in range(len(normalised))}
    counts = {"plain": 0, "mirrored": 0}
    for x, y in dm.train_dataloader():
        for xi, yi in zip(x, y, strict=True):
            r, c = divmod(int(yi), 2)
            cell = xi[:, 32 * r:32 * r + 32, 32 * c:32 * c + 32].contiguous().numpy().tobytes()
            assert cell in plain or cell in mirrored
            counts["plain" if cell in plain else "mirrored"] += 1
    assert sum(counts.values()) == 160
    if augment:
        assert 40 <= counts["mirrored"] <= 120, counts  # about half of 160 (binomial: outside 40..120 is ~1e-10)
    else:
        assert counts["mirrored"] == 0


def test_part_b_resnets_have_the_papers_stem_7x7_stride_2_without_max_pool():
    """docs/position.md: the ResNet-18 variants of the position study use P's 7x7 stride-2 stem without max-pool:
    a 96 px grid canvas (3x3) ends in a 6x6 map (stride 16), not 3x3 (torchvision's stem with the max-pool)."""
    from spatialprobe.models import build_model

    for name in ("gapnet_resnet18", "permutenet_resnet18"):
        cfg = compose_train(f"model={name}", "dataset=grid_cifar10", "model.width=0.125").model
        net = build_model(cfg, 9, 96)
        conv1 = net.body.conv1
        assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((7, 7), (2, 2), (3, 3)), name
        assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()), name
        assert net.forward_features(torch.zeros(1, 3, 96, 96)).shape[-2:] == (6, 6), name


def test_training_placement_is_drawn_from_seed_and_epoch(fake_cifar10, tmp_path):
    dm = build_datamodule(grid_cfg(fake_cifar10, tmp_path, augment=False))
    dm.setup()

    def labels(epoch, seed=0):
        dm.seed = seed
        loader = dm.grid_loader("train", True)
        loader.base.epoch_fn = lambda: epoch
        return torch.cat([y for _, y in loader])

    assert torch.equal(labels(0), labels(0))
    assert not torch.equal(labels(0), labels(1))
    assert not torch.equal(labels(0, seed=0), labels(0, seed=1))


def test_eval_placement_is_fixed_per_image_whatever_the_batch_size(fake_cifar10, tmp_path):
    def cells(batch, eval_subset=None):
        cfg = grid_cfg(fake_cifar10, tmp_path, grid=5)
        cfg.recipe.batch_size = batch
        cfg.dataset.eval_subset = eval_subset
        dm = build_datamodule(cfg)
        dm.setup()
        return torch.cat([c for _, _, c in dm.grid_loader("test", with_cells=True)]), dm

    a, dm = cells(7)
    b, _ = cells(64)
    c, _ = cells(5, eval_subset=20)
    assert torch.equal(a, b) and torch.equal(a[:20], c) and len(a) == 64
    assert torch.equal(a, fixed_cells(64, 5, 0))
    # validation uses the same images and placements as the test split when val_size=0
    assert torch.equal(torch.cat([y for _, y in dm.val_dataloader()]), a)
    # the pasted test image is the unmodified (normalised) test image
    x, y = next(iter(dm.test_dataloader()))
    r, col = divmod(int(y[0]), 5)
    expected = dm.grid_loader("test").base.normalise(dm.tensors["test"][0][:1])[0]
    assert torch.allclose(x[0, :, 32 * r:32 * r + 32, 32 * col:32 * col + 32], expected)


def test_class_target_keeps_the_image_label(fake_cifar10, tmp_path):
    dm = build_datamodule(grid_cfg(fake_cifar10, tmp_path, grid=3, target="class"))
    dm.setup()
    ys = torch.cat([y for _, y in dm.test_dataloader()])
    assert torch.equal(ys, dm.tensors["test"][1])


@pytest.mark.parametrize("override,key", [("dataset.grid=0", "dataset.grid"), ("dataset.grid=-2", "dataset.grid"),
                                          ("dataset.target=where", "dataset.target")])
def test_bad_grid_keys_name_the_key(override, key):
    from spatialprobe.train import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_train("dataset=grid_cifar10", override))
    assert err.value.key == key


@needs_shared_cifar()
def test_real_cifar10_grid_batches(tmp_path):
    cfg = grid_cfg(CIFAR10_JPG, tmp_path, grid=7, subset=16)
    cfg.paths.cache_dir = OmegaConf.select(compose_train(), "paths.cache_dir")  # reuse the decoded cache
    dm = build_datamodule(cfg)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 224, 224) and int(y.max()) < 49
    nonzero = (x.abs().sum(1) > 0).float()  # exactly one 32x32 cell per canvas holds pixels
    for i in range(8):
        r, c = divmod(int(y[i]), 7)
        assert nonzero[i, 32 * r:32 * r + 32, 32 * c:32 * c + 32].mean() > 0.9
        assert nonzero[i].sum() <= 32 * 32


@pytest.mark.parametrize("experiment", ["grid_location", "grid_recognition", "grid_cpu"])
@pytest.mark.parametrize("task", ["classify", "augshift"])
def test_part_b_experiments_compose_and_validate(experiment, task):
    from spatialprobe.train import validate

    cfg = compose_train(f"experiment={experiment}", f"task={task}", "model=permutenet_vgg16", "dataset.grid=5")
    OmegaConf.to_container(cfg, resolve=True)
    validate(cfg)
    assert cfg.task.name == task and cfg.recipe.optimizer == "adam" and tuple(cfg.recipe.betas) == (0.5, 0.999)
    location = experiment != "grid_recognition"
    assert cfg.dataset.num_classes == (25 if location else 10) and cfg.dataset.image_size == 160
    assert (cfg.recipe.lr, cfg.trainer.max_epochs) == ((1e-3, 3 if experiment == "grid_cpu" else 20) if location
                                                      else (1e-2, 100))
