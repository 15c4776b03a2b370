"""Answers: wall time of the answers that must come at once (issue 11), each a fresh process as a user runs it.

* a rejected configuration (``train model.width=-1``);
* a dry run of a 153-job sweep (``train -m experiment=resnet152_imagenet_kcurve dry_run=true``: 3 methods x
  K = 0..50, every job composed and validated, listed with its state);
* ``inspect`` with a K beyond the model's units;
* ``evaluate`` with a checkpoint that does not exist.

Target: under 1 s of wall time each. The baseline, measured in the same run, is what every one of them
paid before validation became data (spatialprobe.config.schema): starting Python and importing torch,
torchvision, torchmetrics and Lightning. Each side is the best of ``--repeats`` runs (the least disturbed
by other processes on a shared machine); the user and system CPU seconds of that run are shown too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

HEAVY = "import torch, torchvision, torchmetrics, pytorch_lightning"
CASES = [
    ("rejected configuration: train model.width=-1 (exit 2)", ["-m", "spatialprobe.train", "model.width=-1"], 2),
    ("dry run of a 153-job sweep: train -m experiment=resnet152_imagenet_kcurve dry_run=true",
     ["-m", "spatialprobe.train", "-m", "experiment=resnet152_imagenet_kcurve", "dry_run=true"], 0),
    ("inspect model=resnet18 method=conv1x1 k=99 (exit 2)",
     ["-m", "spatialprobe.inspect", "model=resnet18", "method=conv1x1", "k=99"], 2),
    ("evaluate ckpt=missing.ckpt (exit 2)", ["-m", "spatialprobe.evaluate", "ckpt=missing.ckpt"], 2),
]
TARGET_S = 1.0


def timed(args: list[str], status: int, env: dict, cwd: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of ``python args``."""
    before = os.times()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = os.times()
    if p.returncode != status:
        raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}, expected {status}\n{p.stderr[-2000:]}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def best(repeats: int, args: list[str], status: int, env: dict, cwd: str) -> tuple[float, float]:
    return min(timed(args, status, env, cwd) for _ in range(repeats))


def run(args) -> list[dict]:
    repeats = 1 if args.quick else max(3, args.repeats)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SPATIALPROBE_RUNS=os.path.join(tmp, "runs"), PYTHONWARNINGS="ignore")
        base_wall, base_cpu = best(repeats, ["-c", HEAVY], 0, env, tmp)
        for case, cmd, status in CASES:
            wall, cpu = best(repeats, cmd, status, env, tmp)
            rows.append({
                "benchmark": "answers", "case": f"{case}; wall time, best of {repeats}",
                "baseline": f"{base_wall:.2f} s ({base_cpu:.2f} s CPU): python -c '{HEAVY}'",
                "candidate": f"{wall:.2f} s ({cpu:.2f} s CPU)", "ratio": wall / base_wall,
                "target": f"< {TARGET_S:g} s", "ok": wall < TARGET_S,
            })
    return rows
