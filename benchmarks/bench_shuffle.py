"""Cost of a shuffle: fwd+bwd time of a shuffled unit over the same unit without it.

Shapes are the papers' (CIFAR, batch 128, full width): VGG-16's last conv units and ResNet-50's
3x3 conv units of layer3 (256 channels, 8x8) and layer4 (512, 4x4) — conv + BN + ReLU, with the
shuffle in front — and, as the method really runs, whole ResNet-50 bottlenecks of layer3 and
layer4, whose shuffled version also permutes the (4x wider) skip input. Baseline and candidate
are timed alternately in the same process, with one thread, in CPU time of the process (which
load from other processes does not inflate); the ratio of their medians is reported.

For the whole bottlenecks a second row shows the floor: the same block with every shuffle replaced
by a plain copy of its input, the least any out-of-place permutation has to do (write the permuted
tensor forward, its gradient backward). The shuffle's gather runs at about 1.3x the speed of such
a copy on this CPU (README "Benchmarks").
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

TARGET = 1.10


def _time_fwd_bwd(module: nn.Module, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_(True)
    t0 = time.process_time()
    module(x).sum().backward()
    return time.process_time() - t0


def _compare(plain: nn.Module, shuffled: nn.Module, x: torch.Tensor, reps: int) -> tuple[float, float]:
    for _ in range(2):  # warm-up (allocator, oneDNN primitives)
        _time_fwd_bwd(plain, x), _time_fwd_bwd(shuffled, x)
    a, b = [], []
    for _ in range(reps):  # alternate, so drift hits both sides alike
        a.append(_time_fwd_bwd(plain, x))
        b.append(_time_fwd_bwd(shuffled, x))
    return statistics.median(a), statistics.median(b)


def _vgg_unit(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class _CopyBothWays(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clone()


class Copy(nn.Module):
    """Stands in for a shuffle: a plain copy of the input forward and of the gradient backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _CopyBothWays.apply(x)


def _shuffled(unit: nn.Module, arch: str, op=None) -> nn.Module:
    """A copy of the unit as the surgery leaves it for spatial_shuffle (the training code path)."""
    from spatialprobe.methods.spatial_shuffle import SpatialShuffle
    from spatialprobe.models import ARCHS
    from spatialprobe.surgery import unit_with_ops

    return unit_with_ops(ARCHS[arch], copy.deepcopy(unit), op or SpatialShuffle)


def cases(quick: bool):
    batch = 8 if quick else 128  # --quick: a smoke run of seconds, not a measurement
    yield "VGG-16 unit, 512 ch, 4x4", _vgg_unit(512), "vgg16_bn", torch.randn(batch, 512, 4, 4)
    yield "VGG-16 unit, 512 ch, 2x2", _vgg_unit(512), "vgg16_bn", torch.randn(batch, 512, 2, 2)
    yield "ResNet-50 layer3 3x3 conv unit, 256 ch, 8x8", _vgg_unit(256), "vgg16_bn", torch.randn(batch, 256, 8, 8)
    yield "ResNet-50 layer4 3x3 conv unit, 512 ch, 4x4", _vgg_unit(512), "vgg16_bn", torch.randn(batch, 512, 4, 4)
    yield "ResNet-50 layer3 whole bottleneck (shuffled skip), 8x8", Bottleneck(1024, 256), "resnet50", torch.randn(batch, 1024, 8, 8)
    yield "ResNet-50 layer4 whole bottleneck (shuffled skip), 4x4", Bottleneck(2048, 512), "resnet50", torch.randn(batch, 2048, 4, 4)


def run(args) -> list[dict]:
    quick = bool(getattr(args, "quick", False))
    reps = 3 if quick else 15
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        for name, unit, family, x in cases(quick):
            shuffled = _shuffled(unit, family)
            base_s, cand_s = _compare(unit, shuffled, x, reps)
            rows.append({
                "benchmark": "shuffle", "case": f"{name}, batch {x.shape[0]}, fwd+bwd, 1 thread, CPU time",
                "baseline": f"{base_s * 1e3:.1f} ms (plain unit)", "candidate": f"{cand_s * 1e3:.1f} ms (spatial_shuffle)",
                "ratio": round(cand_s / base_s, 3), "target": f"<= {TARGET}", "ok": cand_s / base_s <= TARGET,
            })
            if "whole bottleneck" in name:
                base_s, copy_s = _compare(unit, _shuffled(unit, family, Copy), x, reps)
                rows.append({
                    "benchmark": "shuffle", "case": f"{name}: the floor, every shuffle replaced by a plain copy",
                    "baseline": f"{base_s * 1e3:.1f} ms (plain unit)", "candidate": f"{copy_s * 1e3:.1f} ms (copies)",
                    "ratio": round(copy_s / base_s, 3), "target": "",
                })
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    from common import main

    main(run)
