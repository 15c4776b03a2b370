"""How much absolute position can be read from the pooled latent of a classifier (P section 3.2, supplementary).

    python -m spatialprobe.decode checkpoint=runs/<run>/checkpoints/last.ckpt 'grid=[3,5]'
    python -m spatialprobe.decode sweep_dir=runs/sweeps/resnet18_cifar10_augshift_cpu   # every run of a sweep

The network of a ``spatialprobe.train`` checkpoint, trained only to classify, is frozen. Each test
image of its own data set is pasted into one cell of an n x n grid of zeros (the grid task of
:mod:`spatialprobe.data.grid`), the canvas goes through the network, and a linear read-out (one
``nn.Linear`` from the pooled latent to the n*n cells, softmax cross-entropy, Adam) is fitted on
``train_images`` training images placed ``placements`` times each at random cells, then scored on
``test_images`` test images at fixed random cells. ``permute=true`` does the same with the latent's
channels shuffled by a fresh random permutation for every image (in fitting and in testing), as
PermuteNet shuffles them: only what does not depend on the channel order is left to read. The
latent is standardised per channel (statistics of the fitting set) before any permutation.

One JSON record per checkpoint (``<checkpoint dir>/decode.json``) and one table on stdout: per
network and grid size, the location accuracy with the channels in order and permuted, and chance.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spatialprobe import __version__
from spatialprobe.config.cli import tool_entry
from spatialprobe.config.schema import check_decode as validate  # no data, no model: returns the grid sizes
from spatialprobe.errors import ConfigError, DataError


def checkpoints(cfg: DictConfig) -> list[Path]:
    if cfg.checkpoint:
        paths = [Path(str(p)).expanduser() for p in (cfg.checkpoint if OmegaConf.is_list(cfg.checkpoint)
                                                      else [cfg.checkpoint])]
    else:
        root = Path(str(cfg.sweep_dir)).expanduser()
        paths = sorted(root.glob(f"*/checkpoints/{cfg.which}.ckpt"))
        if not paths:
            raise DataError(f"{root}: no */checkpoints/{cfg.which}.ckpt (give the directory of a sweep, "
                            "runs/sweeps/<experiment>)")
    return paths


def describe(tcfg: DictConfig) -> str:
    """A row label from a training config: the model, then what was changed for shift invariance."""
    from spatialprobe.models.position import blurpool_mode

    parts = [str(tcfg.model.name)]
    if OmegaConf.select(tcfg, "task.name") == "augshift":
        parts.append("+AugShift")
    blur = blurpool_mode(OmegaConf.select(tcfg, "model.blurpool"))
    if blur != "none":
        parts.append(f"BlurPool ({blur})")
    return " ".join(parts)


def latents(model, images, labels, mean, std, n: int, cells, batch_size: int):
    """Pooled latents of ``images`` (uint8 NHWC) pasted at ``cells`` of an n x n grid, through the frozen model."""
    import torch

    from spatialprobe.data.grid import paste
    from spatialprobe.data.loader import TensorBatches
    from spatialprobe.position.probe import model_device

    out, start = [], 0
    with torch.no_grad():
        for x, _ in TensorBatches(images, labels, batch_size, mean, std):
            canvas = paste(x, cells[start:start + len(x)], n).to(model_device(model))
            out.append(model.pool(model.forward_features(canvas)).float().cpu())
            start += len(x)
    return torch.cat(out)


def fit_readout(z_train, y_train, z_test, y_test, classes: int, permute: bool, cfg: DictConfig) -> float:
    """Test accuracy (percent) of a linear read-out fitted on (z_train, y_train)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(int(cfg.seed))

    def shuffled(z):  # a fresh permutation of the channels for every row
        if not permute:
            return z
        order = torch.argsort(torch.rand(z.shape, generator=g), dim=1)
        return z.gather(1, order)

    torch.manual_seed(int(cfg.seed))
    readout = nn.Linear(z_train.shape[1], classes)
    opt = torch.optim.Adam(readout.parameters(), lr=float(cfg.lr))
    for _ in range(int(cfg.epochs)):
        order = torch.randperm(len(z_train), generator=g)
        for i in range(0, len(order), 256):
            idx = order[i:i + 256]
            loss = nn.functional.cross_entropy(readout(shuffled(z_train[idx])), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = readout(shuffled(z_test)).argmax(1)
    return round(100.0 * float((pred == y_test).float().mean()), 2)


def decode_one(path: Path, grids: list[int], cfg: DictConfig) -> dict:
    import torch

    from spatialprobe.data import build_datamodule
    from spatialprobe.data.grid import fixed_cells
    from spatialprobe.position.probe import load_classifier, require_pooled_latent
    from spatialprobe.run.records import read_json, write_json_atomic

    t0 = time.time()
    from spatialprobe.position.probe import pick_device

    model, tcfg = load_classifier(path)
    model.to(pick_device(str(cfg.device)))
    ds = OmegaConf.create(OmegaConf.to_container(tcfg.dataset, resolve=True))
    if ds.get("kind", "array") != "array":
        raise ConfigError("checkpoint", str(path), f"position decoding pastes the network's own {ds.get('native_size') or ds.image_size} "
                          f"px images into a grid; {ds.name} ({ds.get('kind')}) is not such a data set",
                          ["a classifier of CIFAR-10/100 or Small-ImageNet"])
    if cfg.data_root:
        ds.root = str(cfg.data_root)
    ds.subset, ds.eval_subset, ds.val_size = None, None, 0
    dm = build_datamodule(OmegaConf.create({"dataset": ds, "paths": {"cache_dir": cfg.paths.cache_dir},
                                            "recipe": {"batch_size": int(cfg.batch_size)}, "seed": int(cfg.seed)}))
    dm.setup()
    latent_size = require_pooled_latent(model, int(ds.image_size), "checkpoint", str(path))
    (xtr, ytr), (xte, yte) = dm.tensors["train"], dm.tensors["test"]
    ntr, nte = min(int(cfg.train_images), len(xtr)), min(int(cfg.test_images), len(xte))
    results = []
    for n in grids:
        g = torch.Generator().manual_seed(int(cfg.seed) + n)
        reps = int(cfg.placements)
        train_cells = torch.randint(n * n, (reps * ntr,), generator=g)
        z_train = torch.cat([latents(model, xtr[:ntr], ytr[:ntr], ds.mean, ds.std, n,
                                     train_cells[r * ntr:(r + 1) * ntr], int(cfg.batch_size)) for r in range(reps)])
        test_cells = fixed_cells(nte, n, int(cfg.seed))
        z_test = latents(model, xte[:nte], yte[:nte], ds.mean, ds.std, n, test_cells, int(cfg.batch_size))
        mu, sd = z_train.mean(0), z_train.std(0).clamp(min=1e-6)
        z_train, z_test = (z_train - mu) / sd, (z_test - mu) / sd
        row = {"grid": n, "chance": round(100.0 / (n * n), 2)}
        for permute in (False, True):
            row["permuted" if permute else "ordered"] = fit_readout(z_train, train_cells, z_test, test_cells, n * n,
                                                                    permute, cfg)
        results.append(row)
    train_record = read_json(path.parent.parent / "result.json") or {}
    record = {
        "status": "complete", "checkpoint": str(path), "network": describe(tcfg), "model": tcfg.model.name,
        "dataset": ds.name, "task": OmegaConf.select(tcfg, "task.name") or "classify",
        "blurpool": OmegaConf.select(tcfg, "model.blurpool"), "latent_size": latent_size,
        "classifier_test_top1": train_record.get("test_top1"),
        "train_images": ntr, "placements": int(cfg.placements), "test_images": nte, "results": results,
        "wall_time_s": round(time.time() - t0, 2), "spatialprobe_version": __version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_json_atomic(path.parent / "decode.json", record)
    return record


def print_table(records: list[dict]) -> None:
    print("| network | classifier top-1 | grid | latent in channel order | channels permuted per image | chance |")
    print("|---|---|---|---|---|---|")
    for rec in records:
        top1 = rec["classifier_test_top1"]
        for row in rec["results"]:
            print(f"| {rec['network']} | {'-' if top1 is None else f'{top1:.1f}'} | {row['grid']}x{row['grid']} | "
                  f"{row['ordered']:.1f} | {row['permuted']:.1f} | {row['chance']:.1f} |")


def run(cfg: DictConfig) -> list[dict]:
    grids = validate(cfg)
    records = [decode_one(path, grids, cfg) for path in checkpoints(cfg)]
    print_table(records)
    return records


main = tool_entry("decode", run, validate=validate)


if __name__ == "__main__":
    main()
