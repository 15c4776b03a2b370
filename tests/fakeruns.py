"""Run directories as training writes them, without training: ``result.json``, ``logs/attempt-1/metrics.csv``,
``checkpoints/`` (and ``eval-*.json``), for the results site's tests and benchmark.

* :func:`evidence_sweep`: the real records of the CPU-scale evidence (docs/evidence/cpu_cifar10_paper_a_results.csv:
  9 trainings and 7 evaluations on real CIFAR-10) written back as run directories, with per-epoch curves that end
  at each run's recorded accuracy;
* :func:`synthetic_sweep`: any number of runs of the demo's network (methods x K x seeds) with the evidence's
  config and plausible accuracies.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from spatialprobe.run.records import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
EVIDENCE = REPO / "docs" / "evidence" / "cpu_cifar10_paper_a_results.csv"
VGG_UNITS = 13


def _value(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def unflatten(row: dict, prefix: str = "config.") -> dict:
    out: dict = {}
    for key, value in row.items():
        if not key.startswith(prefix):
            continue
        node = out
        parts = key[len(prefix):].split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _value(value)
    return out


def evidence_rows() -> list[dict]:
    import pandas as pd

    return pd.read_csv(EVIDENCE).to_dict("records")


def write_metrics(run_dir: Path, epochs: int, final: float, rng: random.Random, lr: float = 0.1) -> None:
    """A Lightning CSVLogger file of ``epochs`` epochs: step rows, then per-epoch train / val rows."""
    folder = run_dir / "logs" / "attempt-1"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["epoch,lr-SGD,step,train_loss_epoch,train_loss_step,train_top1,val_loss,val_top1"]
    for e in range(epochs):
        frac = (e + 1) / epochs
        val = final * (1 - 0.55 * math.exp(-4 * frac)) + rng.uniform(-0.6, 0.6) * (1 - frac)
        train = min(99.0, val * (0.9 + 0.15 * frac))
        loss = 2.3 * math.exp(-2.2 * frac) + 0.2
        step = (e + 1) * 80 - 1
        lines.append(f",{lr * math.sin(math.pi * min(frac, 0.999)):.5f},{step},,{loss * 1.05:.4f},,,")
        lines.append(f"{e},,{step},{loss:.4f},,{train:.2f},,")
        lines.append(f"{e},,{step},,,,{loss * 1.1:.4f},{val:.2f}")
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def _checkpoints(run_dir: Path) -> dict:
    ck = run_dir / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    for name in ("last", "best"):
        (ck / f"{name}.ckpt").write_bytes(b"\0" * 2048)
    return {"last": str(ck / "last.ckpt"), "best": str(ck / "best.ckpt")}


def evidence_sweep(root: Path, name: str = "cpu_cifar10_paper_a", metrics: bool = True) -> Path:
    """The evidence's runs under ``root/<name>/<run dir>``; returns the sweep directory."""
    sweep = Path(root) / name
    rows = evidence_rows()
    rng = random.Random(0)
    by_dir = {}
    for row in rows:
        if row["record"] != "train":
            continue
        run_dir = sweep / Path(row["run_dir"]).name
        config = unflatten(row)
        config["experiment_name"] = name
        rec = {k: _value(row[k]) for k in ("status", "reason", "config_hash", "attempts", "host", "started", "name",
                                             "model", "arch", "dataset", "method", "k", "seed", "params", "flops",
                                             "units", "receptive_field", "task", "epochs", "steps", "test_top1",
                                             "test_top1_best", "test_top1_final", "test_top5_final", "val_top1",
                                             "val_top1_best", "val_top1_final", "train_loss_final", "wall_time_s",
                                             "finished", "git_commit", "spatialprobe_version")}
        rec["modified_units"] = list(range(VGG_UNITS - int(rec["k"]), VGG_UNITS))
        rec["checkpoints"] = _checkpoints(run_dir)
        rec["config"] = config
        write_json_atomic(run_dir / "result.json", rec)
        if metrics:
            write_metrics(run_dir, int(rec.get("epochs") or 12), float(rec["val_top1"]), rng)
        by_dir[row["run_dir"]] = run_dir
    for row in rows:
        if row["record"] != "eval":
            continue
        train, test = row["train_method"], row["test_method"]
        keep, applied = True, None
        if train != "none" and test == "none":
            keep = False
        elif train == "none" and test != "none":
            applied = {"method": test, "k": int(row["test_k"]),
                       "modified_units": list(range(VGG_UNITS - int(row["test_k"]), VGG_UNITS))}
        ev = {"ckpt": str(by_dir[row["run_dir"]] / "checkpoints" / "last.ckpt"),
              "trained": {"model": row["model"], "dataset": row["dataset"], "method": row["method"], "k": int(row["k"]),
                          "seed": int(row["seed"])},
              "keep_method": keep, "test_time_method": applied, "passes": int(row["passes"]),
              "stochastic": bool(row["passes"] > 1), "top1_mean": row["test_top1"], "top1_std": row["test_top1_std"],
              "top5_mean": _value(row["test_top5_final"]), "images": 2000, "eval_seed": 1}
        write_json_atomic(by_dir[row["run_dir"]] / "checkpoints" / Path(row["eval_path"]).name, ev)
    return sweep


def synthetic_sweep(root: Path, name: str, methods=("spatial_shuffle", "channel_shuffle"), ks=(3, 6),
                    seeds=(0,), epochs: int = 12, metrics: bool = True, baseline: bool = True, figures: bool = False,
                    seed: int = 0) -> Path:
    """Runs of the demo's network: a baseline (method none, K=0) per seed, then every method x K x seed."""
    rows = evidence_rows()
    template = unflatten(rows[0])
    sweep = Path(root) / name
    rng = random.Random(seed)
    params = {0: 1024282, 3: 631066, 6: 303386, 9: 221466}
    drop = {"spatial_shuffle": 1.2, "channel_shuffle": 7.0, "gap_fc": 0.9, "conv1x1": 0.6, "none": 0.0}
    jobs = ([("none", 0, s) for s in seeds] if baseline else []) + [(m, k, s) for m in methods for k in ks for s in seeds]
    for method, k, s in jobs:
        run_dir = sweep / (f"k={k},method={method}" + (f",seed={s}" if len(seeds) > 1 else ""))
        config = json.loads(json.dumps(template))
        config.update(experiment_name=name, k=k, seed=s, name=f"vgg16-cifar10-{method}-k{k}-s{s}")
        config["method"] = {**config.get("method", {}), "name": method}
        acc = round(69.0 - drop.get(method, 1.0) * k ** 1.3 / 2 + rng.gauss(0, 0.4), 2)
        reducing = method in ("gap_fc", "conv1x1")
        p = params.get(k, 1024282 - 60000 * k) if reducing else 1024282
        rec = {"status": "complete", "reason": None, "config_hash": f"{abs(hash((name, method, k, s))):016x}"[:16],
               "attempts": 1, "name": config["name"], "model": "vgg16", "arch": "vgg16_bn", "dataset": "cifar10",
               "method": method, "k": k, "seed": s, "params": p, "flops": 40014848 - (1500000 * k if reducing else 0),
               "units": VGG_UNITS, "receptive_field": 212 - 16 * k, "task": "classify", "epochs": epochs,
               "steps": epochs * 80, "test_top1": acc, "test_top1_best": round(acc + 0.2, 2), "test_top1_final": acc,
               "val_top1": acc, "val_top1_best": round(acc + 0.2, 2), "test_top5_final": round(min(99.9, acc + 28), 2),
               "wall_time_s": round(600 + rng.uniform(0, 900), 3), "modified_units": list(range(VGG_UNITS - k, VGG_UNITS)),
               "checkpoints": _checkpoints(run_dir), "config": config}
        write_json_atomic(run_dir / "result.json", rec)
        if metrics:
            write_metrics(run_dir, epochs, acc, rng)
    if figures:
        from PIL import Image

        (sweep / "figures").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (200, 220, 240)).save(sweep / "figures" / "kcurve_vgg16_cifar10.png")
    return sweep


# The test top-1 of the demo's five runs as measured on 2026-12-01 (bf16 + channels_last; docs/sweeps.md, README).
DEMO_2026_12_01 = {("none", 0): 69.45, ("spatial_shuffle", 3): 65.00, ("spatial_shuffle", 6): 62.15,
                   ("channel_shuffle", 3): 38.60, ("channel_shuffle", 6): 29.65}


def demo_sweep(root: Path, name: str = "demo_cifar10_kcurve") -> Path:
    """The demo's five runs with the accuracies it measured on 2026-12-01 (:data:`DEMO_2026_12_01`); the records,
    curves and checkpoints rebuilt around them (the run directories of that day were not kept). README's picture of
    the results site is of this sweep's page."""
    sweep = synthetic_sweep(root, name, methods=("spatial_shuffle", "channel_shuffle"), ks=(3, 6), seeds=(0,))
    rng = random.Random(1)
    for (method, k), acc in DEMO_2026_12_01.items():
        run_dir = sweep / f"k={k},method={method}"
        rec = json.loads((run_dir / "result.json").read_text())
        rec.update(test_top1=acc, test_top1_final=acc, val_top1=acc, test_top1_best=acc, val_top1_best=acc,
                   receptive_field={0: 212, 3: 100, 6: 44}[k])
        write_json_atomic(run_dir / "result.json", rec)
        write_metrics(run_dir, 12, acc, rng)
    return sweep


def site_sweeps(root: Path) -> Path:
    """The sweeps the site tests build on: paper A's CPU-scale evidence and a 3-seed demo with figures."""
    sweeps = root / "sweeps"
    evidence_sweep(sweeps)
    synthetic_sweep(sweeps, "demo_cifar10_kcurve", seeds=(0, 1, 2), figures=True)
    return sweeps
