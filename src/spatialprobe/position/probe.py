"""Position-channel ranking and switch-off (SPEC part B), for any model with a pooled latent.

A *probe* wraps a model in three steps so that one code path serves classifiers and segmentation:
``features(x)`` (computed once per batch), ``latent(features)`` (the pooled (N, C) latent whose
channels are ranked) and ``head(features, channels)`` (the output with those latent channels set
to zero). :class:`ClassifierProbe` wraps any :class:`~spatialprobe.models.SpatialNet` (the latent is
``pool(forward_features(x))``, channels are zeroed in it before ``forward_head``);
:class:`spatialprobe.position.segmentation.SegmentationProbe` wraps torchvision's DeepLabv3 (the latent is
the globally pooled backbone map; channels are zeroed in the map before the head).

Ranking (:func:`channel_scores`, P section 4.2.1):
* ``overall`` (Eq. 2): score_c = mean over images |z_c(x) - z_c(flip x)|, flip = horizontal image flip;
* ``left`` / ``right`` (Eq. 3): the signed mean z_c(x) - z_c(flip x) over images whose object is
  only in the left (right) half: the channels that fire more when the object is on that side;
* variants (P: "Normal", Kernel-Flip*, Kernel-Flip**): ``image_flip`` compares the image with its
  flip through the network; ``kernel_flip_image`` (Kernel-Flip*) does the same through the network
  whose conv kernels are mirrored (:func:`flip_kernels`); ``kernel_flip`` (Kernel-Flip**) passes the
  image itself through the network with and without mirrored kernels.
Channels are ranked by descending score.

Switch-off (:func:`switch_off_study`): the metric with no channel off, with the top-N channels of
every ranking off, with N random channels off (several draws, mean and std), and optionally with
the channels of given rank ranges off (P Fig. 4 bottom), overall and per region (left / centre /
right: the column the object was placed in on the grid; on a segmentation image the left and
right halves and the centre half, see :mod:`spatialprobe.position.segmentation`). One ``features`` pass
per batch serves every condition.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from spatialprobe.errors import ConfigError, DataError, UserError
from spatialprobe.run.measure import dummy_forward

REGIONS = ("left", "centre", "right")


def mask_channels(t: torch.Tensor, channels: torch.Tensor | None) -> torch.Tensor:
    """``t`` with entries ``channels`` of dim 1 set to zero (a copy; ``None`` = unchanged)."""
    if channels is None or len(channels) == 0:
        return t
    keep = torch.ones(t.shape[1], dtype=t.dtype, device=t.device)
    keep[channels.to(t.device)] = 0
    return t * keep.view(1, -1, *([1] * (t.dim() - 2)))


def model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def pick_device(name) -> torch.device:
    """``auto``: the GPU when one is visible, else the CPU; or ``cpu`` / ``cuda`` / ``cuda:N`` (key ``device``)."""
    from spatialprobe.config.schema import require_device

    require_device({"device": name})
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", name, "no CUDA device is visible to this process", ["auto", "cpu"])
    return torch.device(name)


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
        return self.model.pool(self.model.forward_features(x.to(model_device(self.model))))

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
        f = dummy_forward(model, image_size, model.forward_features)
        z = model.pool(f)
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
    """Mean over images of |z(a) - z(b)| per latent channel (``signed``: without the absolute value).

    (a, b) = (x, flip x) through ``probe`` (``image_flip``), through ``flipped`` (``kernel_flip_image``),
    or (x through ``probe``, x through ``flipped``) (``kernel_flip``); ``flipped`` is the probe of the
    network with mirrored kernels.
    """
    total, count = None, 0
    for x in batches:
        net = flipped if variant == "kernel_flip_image" else probe
        z = net.latent(net.features(x))
        zf = flipped.latent(flipped.features(x)) if variant == "kernel_flip" else net.latent(net.features(x.flip(-1)))
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
    """Top-1 accuracy in percent overall and per region code (0 / 1 / 2 = left / centre / right), one
    torchmetrics ``MulticlassAccuracy`` each (summed counts); regions without a sample are left out."""

    def __init__(self):
        self.metrics: dict[str, object] = {}

    def _metric(self, name: str, classes: int):
        from torchmetrics.classification import MulticlassAccuracy

        if name not in self.metrics:
            self.metrics[name] = MulticlassAccuracy(classes, average="micro")
        return self.metrics[name]

    def update(self, logits: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None) -> None:
        logits, target = logits.detach().float().cpu(), target.cpu()
        self._metric("overall", logits.shape[1]).update(logits, target)
        if region is not None:
            region = region.cpu()
            for code, name in enumerate(REGIONS):
                rows = region == code
                if rows.any():
                    self._metric(name, logits.shape[1]).update(logits[rows], target[rows])

    def compute(self) -> dict[str, float | None]:
        return {name: round(100.0 * float(self.metrics[name].compute()), 4)
                for name in ("overall", *REGIONS) if name in self.metrics}


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


def rank_range(spec) -> tuple[int, int]:
    """A rank range ``[first, last]`` (1-based, inclusive; P Fig. 4 bottom: 1-100, 101-200, ...)."""
    first, last = (int(v) for v in spec)
    return first, last


def switch_off_study(probe, batches: Callable[[], Iterable[tuple]], ranking, sizes: Sequence[int],
                     draws: int, new_metric: Callable[[], object], seed: int = 0, ranges: Sequence = ()) -> dict:
    """Metric with nothing off, the top-N channels of each ranking off, N random channels off (``draws`` times),
    and the channels of each rank range of each ranking off.

    ``ranking``: one channel order, or ``{name: order}`` for several. Returns ``{"none": metrics, "n": {N:
    {"top": metrics (one ranking) or {name: metrics}, "random": {region: mean, std}, "random_draws": [...],
    "random_channels": [...]}}, "ranges": {name: {"first-last": metrics}}}``.
    """
    single = not isinstance(ranking, dict)
    rankings = {"ranking": list(ranking)} if single else {k: list(v) for k, v in ranking.items()}
    latent_size = len(next(iter(rankings.values())))
    check_sizes(sizes, latent_size)
    spans = [rank_range(r) for r in ranges]
    for first, last in spans:
        if not 1 <= first <= last <= latent_size:
            raise ConfigError("rank_ranges", [first, last], f"must be [first, last] with 1 <= first <= last <= the "
                              f"latent size ({latent_size} channels)", [f"[1,{min(100, latent_size)}]"])
    g = torch.Generator().manual_seed(int(seed))
    conditions: dict[str, torch.Tensor | None] = {"none": None}
    for n in sizes:
        for name, order in rankings.items():
            conditions[f"top{n}:{name}"] = torch.tensor(order[:n], dtype=torch.long)
        for d in range(draws):
            conditions[f"random{n}_{d}"] = torch.randperm(latent_size, generator=g)[:n]
    for name, order in rankings.items():
        for first, last in spans:
            conditions[f"range{first}-{last}:{name}"] = torch.tensor(order[first - 1:last], dtype=torch.long)
    results = evaluate_conditions(probe, batches(), conditions, new_metric)
    study = {"none": results["none"], "n": {}, "ranges": {}}
    keys = [k for k, v in results["none"].items() if v is not None]
    for n in sizes:
        random = [results[f"random{n}_{d}"] for d in range(draws)]
        summary = {}
        for k in keys:
            vals = torch.tensor([r[k] for r in random], dtype=torch.float64)
            summary[k] = {"mean": round(float(vals.mean()), 4),
                          "std": round(float(vals.std()), 4) if len(vals) > 1 else 0.0}
        top = {name: results[f"top{n}:{name}"] for name in rankings}
        study["n"][str(n)] = {
            "top": top["ranking"] if single else top,
            "random": summary,
            "random_draws": random,
            "random_channels": [conditions[f"random{n}_{d}"].tolist() for d in range(draws)],
        }
    for name in rankings:
        by_range = {f"{a}-{b}": results[f"range{a}-{b}:{name}"] for a, b in spans}
        if single:
            study["ranges"] = by_range
        else:
            study["ranges"][name] = by_range
    return study


def load_classifier(path: Path):
    """The trained network of a spatialprobe.train checkpoint (its surgery included) and its config."""
    from spatialprobe.tasks import load_checkpoint, restore

    try:
        ckpt, tcfg = load_checkpoint(path, "checkpoint")
    except UserError as err:
        hint = "; use source=segmentation for torchvision DeepLab weights" if "not a spatialprobe" in str(err) else ""
        raise DataError(f"{err}{hint}") from None
    try:
        model = restore(ckpt, tcfg)
    except RuntimeError as err:
        raise DataError(f"{path}: its weights do not fit the network its config describes "
                        f"(model={tcfg.model.name}, method={OmegaConf.select(tcfg, 'method.name')}): {str(err).splitlines()[0]}") from None
    return model.eval(), tcfg
