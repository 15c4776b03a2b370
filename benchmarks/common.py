"""Helpers shared by the benchmark modules: the CIFAR data they run on, timing, formatting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("SPATIALPROBE_CIFAR10")
                    or Path(os.environ.get("SPATIALPROBE_SHARED", REPO.parent / "shared")) / "data" / "cifar10-jpg.tar.gz")


def cifar10(n: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 NHWC images, int64 labels, description): real CIFAR-10 when present, else synthetic."""
    from omegaconf import OmegaConf

    from spatialprobe.data import load_splits

    path = SHARED_CIFAR if SHARED_CIFAR.is_file() else None
    if path is not None:
        ds = OmegaConf.create(dict(name="cifar10", num_classes=10, image_size=32, root=str(path), format="folder"))
        cache = os.environ.get("SPATIALPROBE_CACHE", "~/.cache/spatialprobe")
        s = load_splits(ds, Path(cache).expanduser())
        x, y, what = s.x["train"], s.y["train"], f"real CIFAR-10 ({path.name})"
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(n or 50_000, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, size=n or 50_000)
        what = "synthetic uint8 CIFAR-shaped data (real CIFAR-10 not found)"
    return (x[:n], y[:n], what) if n else (x, y, what)


def compose_train(*overrides: str):
    """The project's composed training config (as `python -m spatialprobe.train <overrides>` sees it)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spatialprobe import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def drain(loader) -> None:
    """One pass over ``loader``, discarding the batches."""
    for _ in loader:
        pass


def best_of(repeats: int, measure: Callable[[], float], higher_is_better: bool = True) -> float:
    """Best of ``repeats`` measurements: the least disturbed by other processes on a shared machine."""
    values = [measure() for _ in range(repeats)]
    return max(values) if higher_is_better else min(values)


def rate(n: int, fn: Callable[[], object]) -> float:
    """Items per second of ``fn``, which handles ``n`` items."""
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main(run: Callable) -> None:
    """A benchmark module as a script: ``python benchmarks/bench_x.py [--quick] [--repeats N]`` prints its rows."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    for row in run(p.parse_args()):
        print(row)
