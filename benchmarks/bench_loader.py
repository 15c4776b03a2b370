"""Loader: images/s of the device-resident loader vs torchvision's DataLoader + PIL transforms.

Both produce the same training batches (random crop 32 pad 4, horizontal flip, normalise, batch
128, a new order every epoch) from the same uint8 CIFAR-10 images. The baseline is the classic
pipeline (``Dataset`` returning ``T.Compose([RandomCrop, RandomHorizontalFlip, ToTensor,
Normalize])(PIL image)``) with its best number of worker processes (0 or 2 on this 2-core
machine); the candidate is :class:`spatialprobe.data.loader.TensorBatches` with its best number
of threads (1 or 2), on the CPU here, which is the "device" of a CPU run.
"""

from __future__ import annotations

import torch
from common import best_of, cifar10, drain, rate

from spatialprobe.data.loader import TensorBatches
from spatialprobe.data.torchpath import ArrayImages, array_transform, make_loader

BATCH = 128
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def torchvision_rate(x, y, workers: int) -> float:
    data = ArrayImages(x, y, array_transform(True, MEAN, STD))
    loader = make_loader(data, BATCH, train=True, seed=0, epoch_fn=lambda: 0, num_workers=workers, pin_memory=False)
    if workers:
        next(iter(loader))  # start the persistent workers outside the timed epoch
    return rate(len(loader) * BATCH, lambda: drain(loader))


def device_rate(x, y, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loader = TensorBatches(torch.from_numpy(x), torch.from_numpy(y), BATCH, MEAN, STD, shuffle=True,
                               augment=True, drop_last=True, seed=0)
        next(iter(loader))
        return max(rate(len(loader) * BATCH, lambda: drain(loader)) for _ in range(3))  # short epochs: best of 3
    finally:
        torch.set_num_threads(before)


def run(args) -> list[dict]:
    x, y, what = cifar10(1_280 if args.quick else 25_600)  # --quick: a smoke run of seconds
    base = {w: best_of(args.repeats, lambda w=w: torchvision_rate(x, y, w)) for w in (0, 2)}
    cand = {t: best_of(args.repeats, lambda t=t: device_rate(x, y, t)) for t in (1, 2)}
    w, t = max(base, key=base.get), max(cand, key=cand.get)
    print(f"  torchvision DataLoader img/s by workers: {base}; device loader img/s by threads: {cand}")
    return [{
        "benchmark": "loader",
        "baseline": f"{base[w]:,.0f} (DataLoader + PIL, {w} workers)",
        "candidate": f"{cand[t]:,.0f} (device-resident, {t} thread{'s' if t > 1 else ''})",
        "ratio": cand[t] / base[w],
        "target": ">= 10",
        "case": f"images/s; {len(y):,} images of {what}, crop pad 4 + flip + normalise, batch {BATCH}, CPU",
    }]
