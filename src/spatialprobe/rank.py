"""Rank the pooled-latent channels of a trained network by the position they carry; switch them off.

    # a classifier trained by spatialprobe.train (e.g. GAPNet / PermuteNet on the grid task)
    python -m spatialprobe.rank checkpoint=runs/<run>/checkpoints/last.ckpt top_n=[2,4] ranking=overall
    # DeepLabv3-ResNet-50 on Cityscapes (weights and data are yours to provide)
    python -m spatialprobe.rank source=segmentation checkpoint=deeplabv3_cityscapes.pth \\
        segmentation.root=/data/cityscapes top_n=[100,500]

The ranking (``ranking`` = overall / left / right, ``variant`` = image_flip / kernel_flip) is
computed on ``probe_images`` training images (Cityscapes: the ``probe_split``), the switch-off
study on the test split (Cityscapes: ``segmentation.split``). The JSON record goes next to the
checkpoint (``<checkpoint dir>/position-<ranking>-<variant>.json``) unless ``output`` is set.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR, __version__
from .config import get, hydra_entry
from .errors import ConfigError, DataError, reported
from .schema import check_rank as validate  # checks that need neither data nor a model; returns top_n's N


# --------------------------------------------------------------------------- classifiers
def load_classifier(path: Path):
    """The trained network of a spatialprobe.train checkpoint (its surgery included) and its config."""
    from .errors import UserError
    from .evaluate import load_checkpoint, restore_model

    try:
        ckpt, tcfg = load_checkpoint(path)
    except UserError as err:
        hint = "; use source=segmentation for torchvision DeepLab weights" if "not a spatialprobe" in str(err) else ""
        raise DataError(f"{err}{hint}") from None
    try:
        model = restore_model(ckpt, tcfg)
    except RuntimeError as err:
        raise DataError(f"{path}: its weights do not fit the network its config describes "
                        f"(model={tcfg.model.name}, method={get(tcfg, 'method.name')}): {str(err).splitlines()[0]}") from None
    return model.eval(), tcfg


def _half_masked(x, ranking: str):
    """Images whose content is only in the left (right) half: the other half set to 0 (the mean colour)."""
    if ranking == "overall":
        return x
    x = x.clone()
    w = x.shape[-1]
    if ranking == "left":
        x[..., (w + 1) // 2:] = 0
    else:
        x[..., : w // 2] = 0
    return x


def classifier_data(tcfg: DictConfig, cfg: DictConfig):
    """(probe batches, evaluation batches) for a classifier's data set; grids report per region."""
    import torch

    from .data import build_datamodule
    from .data.grid import GridDataModule, paste, region_of
    from .data.loader import TensorBatches

    ds = OmegaConf.create(OmegaConf.to_container(tcfg.dataset, resolve=True))
    if cfg.data_root:
        ds.root = str(cfg.data_root)
    if cfg.eval_images:
        ds.eval_subset = int(cfg.eval_images)
    dm = build_datamodule(OmegaConf.create({"dataset": ds, "paths": {"cache_dir": cfg.paths.cache_dir},
                                            "recipe": {"batch_size": int(cfg.batch_size)}, "seed": int(cfg.seed)}))
    dm.setup()
    grid = isinstance(dm, GridDataModule)
    if grid and cfg.ranking != "overall" and dm.n < 2:
        raise ConfigError("ranking", cfg.ranking, f"a {dm.n}x{dm.n} grid has no left or right cells", ["overall"])
    images, labels = dm.tensors["train"]
    count = min(int(cfg.probe_images), len(images))

    def probe_batches():
        g = torch.Generator().manual_seed(int(cfg.seed))
        for x, _ in TensorBatches(images[:count], labels[:count], int(cfg.batch_size), ds.mean, ds.std):
            if not grid:
                yield _half_masked(x, cfg.ranking)
                continue
            n, b = dm.n, len(x)
            rows = torch.randint(n, (b,), generator=g)
            side = torch.randint(n // 2, (b,), generator=g)  # a column strictly left of the middle
            cols = {"overall": torch.randint(n, (b,), generator=g), "left": side, "right": n - 1 - side}[cfg.ranking]
            yield paste(x, (rows * n + cols).to(x.device), n)

    def eval_batches():
        if grid:
            for x, y, cells in dm.grid_loader("test", with_cells=True):
                yield x, y, region_of(cells, dm.n)
        else:
            for x, y in dm.test_dataloader():
                yield x, y, None

    return probe_batches, eval_batches


# --------------------------------------------------------------------------- the job
def run(cfg: DictConfig) -> dict:
    sizes = validate(cfg)  # before torch is imported: a bad option is answered at once
    from .position import (
        ClassifierProbe,
        RegionAccuracy,
        channel_scores,
        check_sizes,
        flip_kernels,
        rank,
        require_pooled_latent,
        switch_off_study,
    )

    t0 = time.time()
    checkpoint = Path(str(cfg.checkpoint)).expanduser() if cfg.checkpoint else None
    if cfg.source == "classifier":
        model, tcfg = load_classifier(checkpoint)
        latent_size = require_pooled_latent(model, int(tcfg.dataset.image_size), "checkpoint", str(checkpoint))
        check_sizes(sizes, latent_size)
        probe, new_metric = ClassifierProbe(model), RegionAccuracy
        probe_batches, eval_batches = classifier_data(tcfg, cfg)
        described = {"model": tcfg.model.name, "dataset": tcfg.dataset.name, "train_config": OmegaConf.to_container(tcfg)}
    else:
        from .segmentation import CityscapesBatches, RegionIoU, SegmentationProbe, build_deeplab

        sc = cfg.segmentation
        model = build_deeplab(int(sc.num_classes), checkpoint)
        latent_size = model.classifier[0].convs[0][0].in_channels  # the ASPP reads the 2048-channel backbone map
        check_sizes(sizes, latent_size)
        probe, new_metric = SegmentationProbe(model), lambda: RegionIoU(int(sc.num_classes))
        size = list(sc.size) if sc.size else None

        def probe_batches():
            for x, _, _ in CityscapesBatches(sc.root, sc.probe_split, int(cfg.batch_size), size, int(cfg.probe_images)):
                yield _half_masked(x, cfg.ranking)

        def eval_batches():
            return CityscapesBatches(sc.root, sc.split, int(cfg.batch_size), size, cfg.eval_images)

        described = {"model": sc.arch, "dataset": f"cityscapes:{sc.split}"}

    flipped = probe.with_model(flip_kernels(model)) if cfg.variant == "kernel_flip" else None
    scores = channel_scores(probe, probe_batches(), signed=cfg.ranking != "overall", variant=cfg.variant,
                            flipped=flipped)
    order = rank(scores)
    study = switch_off_study(probe, eval_batches, order, sizes, int(cfg.random_draws), new_metric, int(cfg.seed))
    out = Path(str(cfg.output)) if cfg.output else checkpoint.parent / f"position-{cfg.ranking}-{cfg.variant}.json"
    record = {
        "status": "complete",
        "checkpoint": str(checkpoint) if checkpoint else None,
        "source": cfg.source, **described,
        "ranking": cfg.ranking, "variant": cfg.variant, "metric": probe.metric, "latent_size": latent_size,
        "top_n": sizes, "random_draws": int(cfg.random_draws),
        "ranked_channels": order, "scores": [round(float(s), 6) for s in scores],
        "baseline": study["none"], "switch_off": study["n"],
        "wall_time_s": round(time.time() - t0, 2), "spatialprobe_version": __version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    from .records import write_json_atomic

    write_json_atomic(out, record)
    _print_summary(record, out)
    return record


def _print_summary(record: dict, out: Path) -> None:
    regions = [k for k in ("overall", "left", "centre", "right") if record["baseline"].get(k) is not None]
    print(f"{record['metric']} with channels switched off ({record['ranking']} ranking, {record['variant']}):")
    print("  " + "condition".ljust(24) + "".join(r.rjust(10) for r in regions))
    print("  " + "none".ljust(24) + "".join(f"{record['baseline'][r]:10.2f}" for r in regions))
    for n, res in record["switch_off"].items():
        print("  " + f"top {n}".ljust(24) + "".join(f"{res['top'][r]:10.2f}" for r in regions))
        print("  " + f"random {n} (mean)".ljust(24) + "".join(f"{res['random'][r]['mean']:10.2f}" for r in regions))
    print(f"record: {out}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="rank")
def _hydra_main(cfg: DictConfig) -> None:
    with reported():
        run(cfg)


def main() -> None:
    hydra_entry(_hydra_main, config_name="rank", validate=validate)


if __name__ == "__main__":
    main()
