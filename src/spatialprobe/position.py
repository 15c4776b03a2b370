"""Position-channel ranking and switch-off (SPEC part B), for any model with a pooled latent.

A *probe* wraps a model in three steps so that one code path serves classifiers and segmentation:
``features(x)`` (computed once per batch), ``latent(features)`` (the pooled (N, C) latent whose
channels are ranked) and ``head(features, channels)`` (the output with those latent channels set
to zero). :class:`ClassifierProbe` wraps any :class:`~spatialprobe.models.SpatialNet` (the latent is
``pool(forward_features(x))``, channels are zeroed in it before ``forward_head``);
:class:`spatialprobe.segmentation.SegmentationProbe` wraps torchvision's DeepLabv3 (the latent is
the globally pooled backbone map; channels are zeroed in the map before the head).

Ranking (:func:`channel_scores`):
* ``overall``: score_c = mean over images |z_c(x) - z_c(flip x)|, flip = horizontal image flip;
* ``left`` / ``right``: the signed mean z_c(x) - z_c(flip x) over images whose object is only in
  the left (right) half: the channels that fire more when the object is on that side;
* variant ``kernel_flip``: instead of flipping the image, compare with the same network whose conv
  kernels are flipped horizontally (:func:`flip_kernels`).
Channels are ranked by descending score.

Switch-off (:func:`switch_off_study`): the metric with no channel off, with the top-N ranked
channels off and with N random channels off (several draws, mean and std), overall and per region
(left / centre / right: where the object was placed on the grid, or the thirds of a segmentation
image).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .errors import ConfigError

REGIONS = ("left", "centre", "right")


def mask_channels(t: torch.Tensor, channels: torch.Tensor | None) -> torch.Tensor:
    """``t`` with entries ``channels`` of dim 1 set to zero (a copy; ``None`` = unchanged)."""
    if channels is None or len(channels) == 0:
        return t
    keep = torch.ones(t.shape[1], dtype=t.dtype, device=t.device)
    keep[channels.to(t.device)] = 0
    return t * keep.view(1, -1, *([1] * (t.dim() - 2)))


def flip_kernels(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv2d kernel mirrored left-right (the kernel-flip variant)."""
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        for m in flipped.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight.flip(-1))
    return flipped


class ClassifierProbe:
    """Ranking / switch-off steps of a classifier exposing the seam ``forward_features`` / ``pool`` / ``forward_head``."""

    metric = "top1"

    def __init__(self, model: nn.Module):
        self.model = model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.pool(self.model.forward_features(x))

    def latent(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

    def head(self, feats: torch.Tensor, channels: torch.Tensor | None) -> torch.Tensor:
        return self.model.forward_head(mask_channels(feats, channels))

    def with_model(self, model: nn.Module) -> ClassifierProbe:
        return type(self)(model)


def require_pooled_latent(model: nn.Module, image_size: int, what: str = "checkpoint", value: object = None) -> int:
    """The latent size of ``model``; a ConfigError when it has no globally pooled spatial map to rank."""
    seam = ("forward_features", "pool", "forward_head")
    reason = None
    if not all(callable(getattr(model, name, None)) for name in seam):
        reason = f"{type(model).__name__} has no pooled latent (it does not expose {' / '.join(seam)})"
    else:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                f = model.forward_features(torch.zeros(1, 3, image_size, image_size))
                z = model.pool(f)
        finally:
            model.train(was_training)
        if f.dim() != 4 or z.dim() != 2:
            reason = (f"the model has no pooled latent: its last features are {tuple(f.shape)}, not a spatial map "
                      f"that global pooling turns into a vector")
    if reason is not None:
        raise ConfigError(what, value if value is not None else type(model).__name__, reason,
                          ["a model whose pool(forward_features(x)) globally pools a (N, C, H, W) map"])
    return int(z.shape[1])


@torch.no_grad()
def channel_scores(probe, batches: Iterable[torch.Tensor], signed: bool = False, variant: str = "image_flip",
                   flipped=None) -> torch.Tensor:
    """Mean over images of |z(x) - z(flip x)| per latent channel (``signed``: without the absolute value)."""
    total, count = None, 0
    for x in batches:
        z = probe.latent(probe.features(x))
        zf = probe.latent(probe.features(x.flip(-1))) if variant == "image_flip" else \
            flipped.latent(flipped.features(x))
        d = z - zf
        d = (d if signed else d.abs()).sum(0)
        total = d if total is None else total + d
        count += len(x)
    if total is None:
        raise ValueError("no probe images")
    return total / count


def rank(scores: torch.Tensor) -> list[int]:
    """Channel indices by descending score (ties keep index order)."""
    return torch.sort(scores, descending=True, stable=True).indices.tolist()


class RegionAccuracy:
    """Top-1 accuracy overall and per region code (0 / 1 / 2 = left / centre / right)."""

    def __init__(self):
        self.correct = torch.zeros(4, dtype=torch.long)
        self.count = torch.zeros(4, dtype=torch.long)

    def update(self, logits: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None) -> None:
        hit = (logits.argmax(1) == target).cpu().long()
        self.correct[3] += hit.sum()
        self.count[3] += len(hit)
        if region is not None:
            region = region.cpu()
            self.correct[:3] += torch.bincount(region, weights=hit.double(), minlength=3).long()
            self.count[:3] += torch.bincount(region, minlength=3)

    def compute(self) -> dict[str, float | None]:
        out = {"overall": None}
        for i, name in enumerate((*REGIONS, "overall")):
            n = int(self.count[i])
            if n:
                out[name] = round(100.0 * int(self.correct[i]) / n, 4)
        return out


@torch.no_grad()
def evaluate_conditions(probe, batches: Iterable[tuple], conditions: dict[str, torch.Tensor | None],
                        new_metric: Callable[[], object]) -> dict[str, dict]:
    """The metric of every condition (name -> channels switched off); one ``features`` pass per batch.

    ``batches`` yields ``(x, target, region)``; ``new_metric()`` makes an object with
    ``update(output, target, region)`` and ``compute() -> {region: value}``.
    """
    metrics = {name: new_metric() for name in conditions}
    for x, target, region in batches:
        feats = probe.features(x)
        for name, channels in conditions.items():
            metrics[name].update(probe.head(feats, channels), target, region)
    return {name: m.compute() for name, m in metrics.items()}


def check_sizes(sizes: Sequence[int], latent_size: int, key: str = "top_n") -> None:
    """Every N of channels to switch off must exist in the latent."""
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= latent_size:
            raise ConfigError(key, n, f"must be between 1 and the latent size ({latent_size} channels)",
                              [f"1..{latent_size}"])


def switch_off_study(probe, batches: Callable[[], Iterable[tuple]], ranking: Sequence[int], sizes: Sequence[int],
                     draws: int, new_metric: Callable[[], object], seed: int = 0) -> dict:
    """Metric with nothing off, the top-N ranked channels off, and N random channels off (``draws`` times)."""
    latent_size = len(ranking)
    check_sizes(sizes, latent_size)
    g = torch.Generator().manual_seed(int(seed))
    conditions: dict[str, torch.Tensor | None] = {"none": None}
    for n in sizes:
        conditions[f"top{n}"] = torch.tensor(list(ranking[:n]), dtype=torch.long)
        for d in range(draws):
            conditions[f"random{n}_{d}"] = torch.randperm(latent_size, generator=g)[:n]
    results = evaluate_conditions(probe, batches(), conditions, new_metric)
    study = {"none": results["none"], "n": {}}
    for n in sizes:
        random = [results[f"random{n}_{d}"] for d in range(draws)]
        keys = [k for k, v in results["none"].items() if v is not None]
        summary = {}
        for k in keys:
            vals = torch.tensor([r[k] for r in random], dtype=torch.float64)
            summary[k] = {"mean": round(float(vals.mean()), 4),
                          "std": round(float(vals.std()), 4) if len(vals) > 1 else 0.0}
        study["n"][str(n)] = {
            "top": results[f"top{n}"],
            "random": summary,
            "random_draws": random,
            "random_channels": [conditions[f"random{n}_{d}"].tolist() for d in range(draws)],
        }
    return study
