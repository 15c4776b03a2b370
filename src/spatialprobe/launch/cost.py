"""What a run or a sweep costs before it runs: training FLOPs and GPU-hours (``dry_run=true cost.gpu=H100``).

Training FLOPs of a job = forward FLOPs per image x 3 (forward + backward) x training images x
epochs; testing FLOPs = forward FLOPs per image x test images x the test passes (``eval.test_passes``
when a random op is active at test time, else 1) x the tested checkpoints (2 with ``eval.test_best``:
the final and the best-validation one); the per-epoch validation is left out. The forward FLOPs per image are counted by torch's flop
counter on the network exactly as the run builds it (method and K applied), on the meta device
(no memory, no arithmetic), and cached per network in ``<paths.cache_dir>/flops.json``. GPU-hours
follow from a throughput: ``cost.gpu`` names a GPU of :mod:`spatialprobe.config.gpus` whose bf16 peak
(or ``cost.peak_tflops``) is used at an assumed ``cost.mfu``, or ``cost.images_per_s`` is a
measured training throughput of this network (``make gpu-check`` measures VGG-16 and ResNet-50).

Nothing here runs unless a ``cost`` key is set: a plain dry run stays free of torch.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spatialprobe.config.checks import get
from spatialprobe.config.gpus import peak_tflops

#: training images of the full data sets (``dataset.source`` or ``dataset.name``)
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167, "imagenet32": 1_281_167,
                "imagenet64": 1_281_167}
#: test images of the full data sets
TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 50_000, "imagenet32": 50_000, "imagenet64": 50_000}
SI = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1.0, ""))


def requested(cfg: DictConfig) -> bool:
    return any(get(cfg, f"cost.{key}") is not None for key in ("gpu", "images_per_s", "from_runs"))


def measured_images_per_s(folder: str | Path, model: str | None = None) -> tuple[float, int] | None:
    """The median training throughput (``images_per_s``) the complete records under ``folder`` measured, of
    ``model`` when some are of it (else of all), and how many records it comes from; None without any."""
    import statistics

    from spatialprobe.run.records import RECORD_NAME, read_json

    found = [r for r in (read_json(p) for p in Path(str(folder)).expanduser().rglob(RECORD_NAME)) if r]
    rates = [(r.get("model"), float(r["images_per_s"])) for r in found
             if r.get("status") == "complete" and r.get("images_per_s")]
    same = [v for m, v in rates if m == model] or [v for _, v in rates]
    return (statistics.median(same), len(same)) if same else None


def si(value: float, unit: str = "FLOP") -> str:
    scale, prefix = next(((s, p) for s, p in SI if abs(value) >= s), SI[-1])
    return f"{value / scale:.3g} {prefix}{unit}"


def train_images(cfg: DictConfig) -> int | None:
    """Training images of a run: the data set's size, less the held-out validation images, cut to ``subset``."""
    ds = cfg.dataset
    full = TRAIN_IMAGES.get(str(ds.get("source") or ds.name))
    if full is None:
        return int(ds.subset) if ds.get("subset") else None
    full -= int(ds.get("val_size") or 0)
    return min(full, int(ds.subset)) if ds.get("subset") else full


def test_images(cfg: DictConfig) -> int | None:
    """Test images of a run: the data set's test split, cut to ``eval_subset`` (else ``subset``)."""
    ds = cfg.dataset
    full = TEST_IMAGES.get(str(ds.get("source") or ds.name))
    cut = ds.get("eval_subset") or ds.get("subset")
    if full is None:
        return int(cut) if cut else None
    return min(full, int(cut)) if cut else full


def test_passes(cfg: DictConfig) -> int:
    """Passes of each test: ``eval.test_passes`` when the method's random op stays on at test time, else 1."""
    from spatialprobe.config.schema import METHOD_KINDS

    method = cfg.method
    modifies = int(cfg.k) > 0 or method.get("unit") is not None
    random_at_test = METHOD_KINDS.get(str(method.name)) == "op" and bool(method.get("test", True)) and modifies
    return int(get(cfg, "eval.test_passes") or 1) if random_at_test else 1


def _network_key(cfg: DictConfig) -> str:
    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items()
             if k not in ("channels_last", "compile")}
    return json.dumps({"model": model, "method": OmegaConf.to_container(cfg.method, resolve=True), "k": int(cfg.k),
                       "size": int(cfg.dataset.image_size), "classes": int(cfg.dataset.num_classes)}, sort_keys=True)


# in-place random / constant initialisers of torch.Tensor: no-ops while a network is built on the
# meta device (there are no values to fill; skipping them makes the build 4-5x faster)
_INITIALISERS = ("normal_", "uniform_", "fill_", "zero_", "random_", "bernoulli_", "exponential_", "log_normal_",
                 "cauchy_", "geometric_")


@contextlib.contextmanager
def _on_meta_without_init():
    import torch

    saved = {name: getattr(torch.Tensor, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(torch.Tensor, name, lambda self, *args, **kwargs: self)
        with torch.device("meta"):
            yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def count_forward_flops(cfg: DictConfig) -> int:
    """Forward FLOPs of one image through the run's network (``measure.count_flops``, as in the
    record), built and counted on the meta device: no memory, no arithmetic."""
    from spatialprobe import surgery
    from spatialprobe.models import build_model
    from spatialprobe.run.measure import count_flops

    size = int(cfg.dataset.image_size)
    with _on_meta_without_init():
        model = build_model(cfg.model, int(cfg.dataset.num_classes), size)
        surgery.apply(model, cfg.method, int(cfg.k), size)
    return count_flops(model.to("meta"), size)


class FlopCache:
    """Forward FLOPs per network, remembered in a JSON file between dry runs."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, int] = {}
        if path is not None and path.is_file():
            try:
                self.data = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, OSError, AttributeError):
                self.data = {}
        self.dirty = False

    def forward_flops(self, cfg: DictConfig) -> int:
        key = _network_key(cfg)
        if key not in self.data:
            self.data[key] = count_forward_flops(cfg)
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        from spatialprobe.run.records import write_json_atomic

        try:
            write_json_atomic(self.path, self.data)
        except OSError:
            pass  # a read-only cache directory only costs the next dry run its counting


@dataclass
class Cost:
    forward_flops: int
    images: int | None
    epochs: int
    test_images: int | None = None
    passes: int = 1      # per test
    tests: int = 1       # tested checkpoints (final, best)

    @property
    def train_flops(self) -> float | None:
        return None if self.images is None else 3.0 * self.forward_flops * self.images * self.epochs

    @property
    def tested_images(self) -> int:
        return (self.test_images or 0) * self.passes * self.tests

    @property
    def test_flops(self) -> float:
        return float(self.forward_flops) * self.tested_images

    @property
    def flops(self) -> float | None:
        return None if self.train_flops is None else self.train_flops + self.test_flops


def job_cost(cfg: DictConfig, cache: FlopCache) -> Cost:
    return Cost(cache.forward_flops(cfg), train_images(cfg), int(cfg.trainer.max_epochs), test_images(cfg),
                test_passes(cfg), 2 if get(cfg, "eval.test_best") else 1)


def throughput(cfg: DictConfig) -> tuple[float | None, float | None, str]:
    """(effective FLOP/s, images/s, description) of the stated throughput: one of them is set."""
    ips = get(cfg, "cost.images_per_s")
    if ips is not None:
        return None, float(ips), f"at {float(ips):,.0f} images/s (cost.images_per_s)"
    folder = get(cfg, "cost.from_runs")
    if folder is not None:
        measured = measured_images_per_s(folder, get(cfg, "model.name"))
        if measured is None:
            from spatialprobe.errors import ConfigError

            raise ConfigError("cost.from_runs", folder, "holds no complete run record with a measured images_per_s",
                              ["a sweep directory of earlier runs", "cost.images_per_s=<images/s>"])
        rate, runs = measured
        return None, rate, f"at {rate:,.0f} images/s (the median measured by {runs} run(s) in {folder})"
    gpu, mfu = str(get(cfg, "cost.gpu")), float(get(cfg, "cost.mfu") or 0.3)
    peak = peak_tflops(gpu, "bf16", get(cfg, "cost.peak_tflops"))
    return peak * 1e12 * mfu, None, f"on one {gpu} ({peak:g} TFLOP/s bf16 peak x MFU {mfu:g})"


def gpu_hours(cost: Cost, flop_per_s: float | None, images_per_s: float | None) -> float | None:
    if images_per_s is not None:  # a training throughput; a test image costs a third of a training image
        return None if cost.images is None else (cost.images * cost.epochs + cost.tested_images / 3) / images_per_s / 3600
    flops = cost.flops
    return None if flops is None or not flop_per_s else flops / flop_per_s / 3600


def gpu_time(hours: float) -> str:
    if hours >= 1:
        return f"{hours:,.1f} GPU-hours"
    return f"{hours * 60:.1f} GPU-minutes" if hours * 60 >= 1 else f"{hours * 3600:.1f} GPU-seconds"


def describe(cost: Cost, hours: float | None) -> str:
    flops = cost.train_flops
    if flops is None:
        return f"{si(cost.forward_flops)}/image forward (training images unknown)"
    text = f"{si(flops)} to train"
    if cost.test_flops:
        text += f", {si(cost.test_flops)} to test ({cost.passes} pass{'es' if cost.passes > 1 else ''} x {cost.tests})"
    return f"{text}, {gpu_time(hours)}" if hours is not None and math.isfinite(hours) else text


def report(configs: list[DictConfig], cache_dir: str | Path | None) -> tuple[list[str], str]:
    """A cost text per job, and the total line."""
    cache = FlopCache(Path(str(cache_dir)).expanduser() / "flops.json" if cache_dir else None)
    flop_per_s, images_per_s, how = throughput(configs[0])
    lines, total_flops, total_hours, unknown = [], 0.0, 0.0, 0
    for cfg in configs:
        cost = job_cost(cfg, cache)
        hours = gpu_hours(cost, flop_per_s, images_per_s)
        lines.append(describe(cost, hours))
        if cost.flops is None or hours is None:
            unknown += 1
        else:
            total_flops += cost.flops
            total_hours += hours
    cache.save()
    total = (f"cost: {si(total_flops)} to train and test (forward FLOPs/image x (3 x training images x epochs + "
             f"test images x passes x tested checkpoints)), {gpu_time(total_hours)} {how}")
    if unknown:
        total += f"; {unknown} job(s) of unknown size left out"
    return lines, total
