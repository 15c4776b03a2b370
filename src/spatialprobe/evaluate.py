"""Evaluate a trained checkpoint, optionally with a parameter-free method applied at test time.

    python -m spatialprobe.evaluate ckpt=runs/x/checkpoints/last.ckpt eval.passes=200
    python -m spatialprobe.evaluate ckpt=... method=spatial_shuffle k=4 eval.passes=200
    python -m spatialprobe.evaluate ckpt=... eval.keep_method=false      # trained with, tested without

Stochastic evaluations run ``eval.passes`` times, each pass seeded from ``eval.seed`` (default:
the training seed + 1), and are reported as mean and std. The evaluation record is written
atomically beside the checkpoint as ``eval-<method>-k<K>-<hash>.json``; the last stdout line is
its JSON.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR
from .config import hydra_entry, require_given
from .errors import UserError, reported
from .schema import check_evaluate, check_test_time_method

CKPT_EXAMPLE = "runs/<run>/checkpoints/last.ckpt"


def require_checkpoint(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"ckpt={str(path)!r}: no such checkpoint file")


def load_checkpoint(path: Path) -> tuple[dict, DictConfig]:
    require_checkpoint(path)
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"ckpt={str(path)!r}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    if "spatialprobe_config" not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"ckpt={str(path)!r}: not a spatialprobe checkpoint (no training config inside)")
    tcfg = OmegaConf.create(ckpt["spatialprobe_config"])
    if OmegaConf.select(tcfg, "task.name") == "detect":
        raise UserError(f"ckpt={str(path)!r}: a detector (task=detect); evaluate measures classification accuracy. "
                        "The detector's test mAP and errors are in its run's result.json")
    return ckpt, tcfg


def restore_model(ckpt: dict, tcfg: DictConfig):
    """The trained network: baseline build, the training surgery, then the trained weights."""
    from . import surgery
    from .models import build_model

    size = int(tcfg.dataset.image_size)
    model = build_model(tcfg.model, int(tcfg.dataset.num_classes), size)
    surgery.apply(model, tcfg.method, int(tcfg.k), size)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model


def stochastic_ops(model) -> list:
    from .methods.base import StochasticOp

    return [m for m in model.modules() if isinstance(m, StochasticOp)]


def check(cfg: DictConfig) -> Path:
    """Every check that needs no checkpoint contents (no torch): the checkpoint's path, and the options."""
    ckpt_path = Path(str(require_given(cfg, "ckpt", CKPT_EXAMPLE, "the checkpoint to evaluate")))
    check_evaluate(cfg)
    require_checkpoint(ckpt_path)
    return ckpt_path


def evaluate(cfg: DictConfig) -> dict:
    ckpt_path = check(cfg)  # before torch is imported: a mistake is answered at once

    import torch
    from torchmetrics.classification import MulticlassAccuracy

    from . import surgery
    from .data import load_splits
    from .data.loader import TensorBatches
    from .records import write_json_atomic
    from .streams import seed_global

    ckpt, tcfg = load_checkpoint(ckpt_path)
    check_test_time_method(cfg, tcfg)
    t0 = time.time()
    model = restore_model(ckpt, tcfg)
    if not cfg.eval.keep_method:
        for op in stochastic_ops(model):
            op.active_test = False
    applied = None
    if cfg.get("method") is not None and cfg.method.name != "none":
        report = surgery.apply(model, OmegaConf.merge(cfg.method, {"train": False, "test": True}), int(cfg.k),
                               int(tcfg.dataset.image_size))
        applied = {"method": cfg.method.name, "k": int(cfg.k), "modified_units": report.modified_units,
                   **{k: v for k, v in OmegaConf.to_container(cfg.method).items() if k not in ("name", "train", "test")}}

    ds = OmegaConf.merge(tcfg.dataset, {k: v for k, v in cfg.data.items() if v is not None})
    splits = load_splits(ds, cfg.paths.cache_dir)
    if cfg.eval.split == "val" and int(ds.get("val_size") or 0) > 0:
        x, y = splits.x["train"][-int(ds.val_size):], splits.y["train"][-int(ds.val_size):]
    else:
        x, y = splits.x["test"], splits.y["test"]
    if ds.get("eval_subset"):
        x, y = x[: int(ds.eval_subset)], y[: int(ds.eval_subset)]
    device = torch.device("cuda" if cfg.eval.device == "auto" and torch.cuda.is_available() else
                          cfg.eval.device if cfg.eval.device != "auto" else "cpu")
    model = model.to(device).eval()
    loader = TensorBatches(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), int(cfg.eval.batch_size),
                           ds.mean, ds.std, size=int(ds.image_size))  # upsampled data sets: resized on the device
    active = [op for op in stochastic_ops(model) if op.active]
    passes = int(cfg.eval.passes) if active else 1  # a deterministic network gives the same answer every pass
    seed = int(cfg.eval.seed) if cfg.eval.seed is not None else int(tcfg.seed) + 1
    n_classes = int(tcfg.dataset.num_classes)
    top1 = MulticlassAccuracy(n_classes, top_k=1, average="micro").to(device)
    top5 = MulticlassAccuracy(n_classes, top_k=5, average="micro").to(device) if n_classes > 5 else None
    results = []
    with torch.no_grad():
        for p in range(passes):
            seed_global(seed, "eval_pass", p)
            loss_sum = 0.0
            for xb, yb in loader:
                logits = model(xb)
                loss_sum += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
                top1.update(logits, yb)
                if top5 is not None:
                    top5.update(logits, yb)
            results.append((float(top1.compute()) * 100, float(top5.compute()) * 100 if top5 is not None else None,
                            loss_sum / len(y)))
            top1.reset()
            if top5 is not None:
                top5.reset()
    t1 = [r[0] for r in results]
    record = {
        "ckpt": str(ckpt_path.resolve()), "trained": {"model": tcfg.model.name, "dataset": tcfg.dataset.name,
                                                       "method": tcfg.method.name, "k": int(tcfg.k),
                                                       "seed": int(tcfg.seed)},
        "keep_method": bool(cfg.eval.keep_method), "test_time_method": applied, "split": cfg.eval.split,
        "images": int(len(y)), "eval_seed": seed, "passes": passes, "stochastic": bool(active),
        "top1": [round(v, 4) for v in t1], "top1_mean": round(statistics.fmean(t1), 4),
        "top1_std": round(statistics.stdev(t1), 4) if len(t1) > 1 else 0.0,
        "top5_mean": round(statistics.fmean(r[1] for r in results), 4) if top5 is not None else None,
        "loss": [round(r[2], 6) for r in results], "loss_mean": round(statistics.fmean(r[2] for r in results), 6),
        "time_s": round(time.time() - t0, 2),
    }
    ident = json.dumps({k: record[k] for k in ("keep_method", "test_time_method", "split", "images", "eval_seed")},
                       sort_keys=True) + str(cfg.eval.passes)
    name = applied["method"] if applied else ("trained" if cfg.eval.keep_method else "trained-off")
    out = ckpt_path.parent / f"eval-{name}-k{applied['k'] if applied else 0}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}.json"
    record["path"] = str(out)
    write_json_atomic(out, record)
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    with reported():
        rec = evaluate(cfg)
    what = rec["test_time_method"]["method"] if rec["test_time_method"] else "as trained"
    print(f"{rec['trained']['model']} ({rec['trained']['method']} k={rec['trained']['k']}) evaluated {what}: "
          f"top1 {rec['top1_mean']:.2f} +- {rec['top1_std']:.2f} over {rec['passes']} pass(es) "
          f"on {rec['images']} images -> {rec['path']}")
    print(json.dumps(rec), flush=True)


def main() -> None:
    hydra_entry(_hydra_main, config_name="evaluate", validate=check)


if __name__ == "__main__":
    main()
