"""Rank the pooled-latent channels of a trained network by the position they carry; switch them off.

    # a classifier trained by spatialprobe.train (e.g. GAPNet / PermuteNet on the grid task)
    python -m spatialprobe.rank checkpoint=runs/<run>/checkpoints/last.ckpt top_n=[2,4] ranking=overall
    # DeepLabv3-ResNet-50 on Cityscapes (P 4.2): a checkpoint of spatialprobe.train (task=segment) or a state dict
    python -m spatialprobe.rank source=segmentation checkpoint=deeplabv3_cityscapes.pth \\
        segmentation.root=/data/cityscapes 'ranking=[overall,left,right]' 'top_n=[10,100,500]'

The ranking (``ranking`` = overall / left / right or a list of them, ``variant`` = image_flip /
kernel_flip_image / kernel_flip or a list) is computed on ``probe_images`` images: the training split
of a classifier's data set, the Cityscapes ``probe_split`` (val, as in P; ``left`` / ``right`` use its
val-left / val-right subsets, chosen from the labels). The switch-off study (top-N of every ranking,
N random channels, ``rank_ranges``) runs on the test split (Cityscapes: ``segmentation.split``).
The JSON record goes next to the checkpoint (``<checkpoint dir>/position-<ranking>-<variant>.json``)
unless ``output`` is set; with ``figures=true`` P's Figs. 4 and 6 (PNG, PDF, markdown tables) and,
for segmentation with ``fig5.images`` > 0, Fig. 5's masks (PNG) go to ``<record>-figures/``.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spatialprobe import __version__
from spatialprobe.config.cli import tool_entry
from spatialprobe.config.schema import check_rank as validate  # no data, no model: returns top_n's N
from spatialprobe.errors import ConfigError


def as_list(value) -> list:
    return list(value) if OmegaConf.is_list(value) else [value]


# --------------------------------------------------------------------------- classifiers
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
    """(probe batches(ranking), evaluation batches) for a classifier's data set; grids report per region."""
    import torch

    from spatialprobe.data import build_datamodule
    from spatialprobe.data.grid import GridDataModule, paste, region_of
    from spatialprobe.data.loader import TensorBatches

    ds = OmegaConf.create(OmegaConf.to_container(tcfg.dataset, resolve=True))
    if cfg.data_root:
        ds.root = str(cfg.data_root)
    if cfg.eval_images:
        ds.eval_subset = int(cfg.eval_images)
    dm = build_datamodule(OmegaConf.create({"dataset": ds, "paths": {"cache_dir": cfg.paths.cache_dir},
                                            "recipe": {"batch_size": int(cfg.batch_size)}, "seed": int(cfg.seed)}))
    dm.setup()
    grid = isinstance(dm, GridDataModule)
    sided = [r for r in as_list(cfg.ranking) if r != "overall"]
    if grid and sided and dm.n < 2:
        raise ConfigError("ranking", sided[0], f"a {dm.n}x{dm.n} grid has no left or right cells", ["overall"])
    images, labels = dm.tensors["train"]
    count = min(int(cfg.probe_images), len(images))

    def probe_batches(ranking: str):
        g = torch.Generator().manual_seed(int(cfg.seed))
        for x, _ in TensorBatches(images[:count], labels[:count], int(cfg.batch_size), ds.mean, ds.std):
            if not grid:
                yield _half_masked(x, ranking)
                continue
            n, b = dm.n, len(x)
            rows = torch.randint(n, (b,), generator=g)
            # a column strictly left of the middle (a 1x1 grid has none: only ranking=overall reaches here)
            side = torch.randint(n // 2, (b,), generator=g) if n >= 2 else torch.zeros(b, dtype=torch.long)
            cols = {"overall": torch.randint(n, (b,), generator=g), "left": side, "right": n - 1 - side}[ranking]
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
def load_segmentation(cfg: DictConfig, checkpoint: Path | None):
    """(DeepLab model, description): a checkpoint of spatialprobe.train (task=segment) or a plain state dict."""
    from spatialprobe.position.segmentation import build_deeplab

    sc = cfg.segmentation
    if checkpoint is not None and checkpoint.is_file():
        from spatialprobe.run.checkpoints import load

        ckpt = load(checkpoint, f"checkpoint={str(checkpoint)!r}")  # tensors and plain data only: no code runs
        if isinstance(ckpt, dict) and "spatialprobe_config" in ckpt:
            from spatialprobe.tasks import restore

            tcfg = OmegaConf.create(ckpt["spatialprobe_config"])
            if tcfg.model.arch != "deeplabv3_resnet50":
                raise ConfigError("checkpoint", str(checkpoint), f"a {tcfg.model.arch} checkpoint; source=segmentation "
                                  "needs a deeplabv3_resnet50 (task=segment)", ["source=classifier"])
            return restore(ckpt, tcfg).body.eval(), {"model": tcfg.model.name, "train_config": ckpt["spatialprobe_config"]}
        return build_deeplab(int(sc.num_classes), state=ckpt, label=str(checkpoint)), {"model": sc.arch}
    return build_deeplab(int(sc.num_classes), checkpoint), {"model": sc.arch}


def run(cfg: DictConfig) -> dict:
    sizes = validate(cfg)  # before torch is imported: a bad option is answered at once
    from spatialprobe.position.probe import (
        ClassifierProbe,
        RegionAccuracy,
        channel_scores,
        check_sizes,
        flip_kernels,
        load_classifier,
        pick_device,
        rank,
        require_pooled_latent,
        switch_off_study,
    )

    t0 = time.time()
    rankings, variants = as_list(cfg.ranking), as_list(cfg.variant)
    ranges = [list(r) for r in cfg.rank_ranges] if cfg.rank_ranges is not None else []
    checkpoint = Path(str(cfg.checkpoint)).expanduser() if cfg.checkpoint else None
    if cfg.source == "classifier":
        model, tcfg = load_classifier(checkpoint)
        latent_size = require_pooled_latent(model, int(tcfg.dataset.image_size), "checkpoint", str(checkpoint))
        check_sizes(sizes, latent_size)
        probe, new_metric = ClassifierProbe(model), RegionAccuracy
        probe_batches, eval_batches = classifier_data(tcfg, cfg)
        described = {"model": tcfg.model.name, "dataset": tcfg.dataset.name, "train_config": OmegaConf.to_container(tcfg)}
    else:
        from spatialprobe.data.cityscapes import CityscapesBatches
        from spatialprobe.position.segmentation import RegionIoU, SegmentationProbe

        sc = cfg.segmentation
        model, described = load_segmentation(cfg, checkpoint)
        latent_size = model.classifier[0].convs[0][0].in_channels  # the ASPP reads the 2048-channel backbone map
        check_sizes(sizes, latent_size)
        probe, new_metric = SegmentationProbe(model), lambda: RegionIoU(int(sc.num_classes))
        size = list(sc.size) if sc.size else None

        def probe_batches(ranking: str):  # P: the val split; val-left / val-right for the region rankings
            side = None if ranking == "overall" else ranking
            for x, _, _ in CityscapesBatches(sc.root, sc.probe_split, int(cfg.batch_size), size, int(cfg.probe_images),
                                             side=side, image_list=sc.get("image_list")):
                yield x

        def eval_batches():
            return CityscapesBatches(sc.root, sc.split, int(cfg.batch_size), size, cfg.eval_images)

        described["dataset"] = f"cityscapes:{sc.split}"

    model.to(pick_device(str(cfg.device)))
    flipped = probe.with_model(flip_kernels(model)) if any(v != "image_flip" for v in variants) else None
    orders, scores = {}, {}
    for ranking in rankings:
        for variant in variants:
            name = f"{ranking}/{variant}"
            scores[name] = channel_scores(probe, probe_batches(ranking), signed=ranking != "overall", variant=variant,
                                          flipped=flipped)
            orders[name] = rank(scores[name])
    study = switch_off_study(probe, eval_batches, orders, sizes, int(cfg.random_draws), new_metric, int(cfg.seed),
                             ranges)
    first = next(iter(orders))
    stem = f"position-{'+'.join(rankings)}-{'+'.join(variants)}"
    out = Path(str(cfg.output)) if cfg.output else checkpoint.parent / f"{stem}.json"
    record = {
        "status": "complete",
        "checkpoint": str(checkpoint) if checkpoint else None,
        "source": cfg.source, **described,
        "ranking": cfg.ranking if len(rankings) > 1 else rankings[0],
        "variant": cfg.variant if len(variants) > 1 else variants[0],
        "metric": probe.metric, "latent_size": latent_size,
        "top_n": sizes, "random_draws": int(cfg.random_draws), "rank_ranges": ranges,
        # the first ranking, as a single-ranking record has it
        "ranked_channels": orders[first], "scores": [round(float(v), 6) for v in scores[first]],
        "baseline": study["none"],
        "switch_off": {n: {**res, "top": res["top"][first]} for n, res in study["n"].items()},
        # every ranking: its channels, scores, top-N and rank-range results
        "rankings": {name: {"ranked_channels": order, "scores": [round(float(v), 6) for v in scores[name]],
                            "top": {n: res["top"][name] for n, res in study["n"].items()},
                            "ranges": study["ranges"][name]} for name, order in orders.items()},
        "wall_time_s": round(time.time() - t0, 2), "spatialprobe_version": __version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    from spatialprobe.run.records import write_json_atomic

    write_json_atomic(out, record)
    _print_summary(record, out)
    if cfg.figures:
        from spatialprobe.report.position import draw_all, masks_figure

        folder = out.parent / f"{out.stem}-figures"
        for path in draw_all(record, folder):
            print(f"figure: {path}")
        if cfg.source == "segmentation" and int(cfg.fig5.images) > 0:
            n = int(cfg.fig5.top_n) if cfg.fig5.top_n else sizes[-1]
            for path in masks_figure(probe, eval_batches(), orders[first], n, int(cfg.fig5.images), folder, int(cfg.seed)):
                print(f"figure: {path}")
    return record


def _print_summary(record: dict, out: Path) -> None:
    regions = [k for k in ("overall", "left", "centre", "right") if record["baseline"].get(k) is not None]
    print(f"{record['metric']} with channels switched off:")
    print("  " + "condition".ljust(40) + "".join(r.rjust(10) for r in regions))
    print("  " + "none".ljust(40) + "".join(f"{record['baseline'][r]:10.2f}" for r in regions))
    for n, res in record["switch_off"].items():
        for name, ranked in record["rankings"].items():
            print("  " + f"top {n} ({name})".ljust(40) + "".join(f"{ranked['top'][n][r]:10.2f}" for r in regions))
        print("  " + f"random {n} (mean)".ljust(40) + "".join(f"{res['random'][r]['mean']:10.2f}" for r in regions))
    for name, ranked in record["rankings"].items():
        for span, res in ranked["ranges"].items():
            print("  " + f"ranks {span} ({name})".ljust(40) + "".join(f"{res[r]:10.2f}" for r in regions))
    print(f"record: {out}")


main = tool_entry("rank", run, validate=validate)


if __name__ == "__main__":
    main()
