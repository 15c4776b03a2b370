"""GPU: training images/s and model FLOP utilisation (MFU) of VGG-16-BN and ResNet-50 on 32 px data.

Only on a machine with a CUDA device (a row saying so otherwise). For each network, 100 classes,
batch 256, the device-resident loader (crop + flip on the GPU): the baseline is fp32 with NCHW
memory, the candidate the speed options (``trainer.precision`` bf16-mixed, or 16-mixed where the
GPU has no bfloat16, plus ``model.channels_last``). MFU = 3 x forward FLOPs per image (forward +
backward) x images/s / the GPU's peak dense tensor FLOP/s (a table of common GPUs, or
``SPATIALPROBE_PEAK_TFLOPS``).
"""

from __future__ import annotations

import os
import time

import torch
from common import cifar10
from omegaconf import OmegaConf

from spatialprobe.data.loader import TensorBatches
from spatialprobe.measure import count_flops
from spatialprobe.models import build_model

BATCH, WARMUP = 256, 10
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# dense fp16/bf16 tensor-core peak, TFLOP/s
PEAK_TFLOPS = {"H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0, "A10": 125.0, "L40S": 362.0,
               "L40": 181.0, "L4": 121.0, "V100": 125.0, "T4": 65.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


def peak_tflops() -> float | None:
    if os.environ.get("SPATIALPROBE_PEAK_TFLOPS"):
        return float(os.environ["SPATIALPROBE_PEAK_TFLOPS"])
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def images_per_second(arch: str, loader: TensorBatches, steps: int, dtype: torch.dtype | None, nhwc: bool) -> float:
    torch.manual_seed(0)
    model = build_model(OmegaConf.create({"arch": arch, "width": 1.0, "stem": "auto", "fc_width": 4096,
                                          "dropout": 0.5}), 100, 32).cuda()
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    loader.channels_last = nhwc
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(enabled=dtype is torch.float16)
    batches = iter(loader)
    for i in range(WARMUP + steps):
        if i == WARMUP:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = next(batches)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - t0)


def run(args) -> list[dict]:
    if not torch.cuda.is_available():
        return [{"benchmark": "gpu", "case": "training images/s and MFU: skipped, no CUDA device on this machine",
                 "baseline": "", "candidate": "", "ratio": None, "target": ""}]
    steps = 20 if args.quick else 100
    x, y, what = cifar10(BATCH * (WARMUP + steps))
    loader = TensorBatches(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), BATCH, MEAN, STD, shuffle=True,
                           augment=True, drop_last=True, seed=0)
    mixed = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    peak = peak_tflops()
    rows = []
    for arch in ("vgg16_bn", "resnet50"):
        flops = count_flops(build_model(OmegaConf.create({"arch": arch, "width": 1.0, "stem": "auto",
                                                          "fc_width": 4096}), 100, 32), 32)
        base = max(images_per_second(arch, loader, steps, None, False) for _ in range(args.repeats))
        cand = max(images_per_second(arch, loader, steps, mixed, True) for _ in range(args.repeats))
        mfu = f", MFU {3 * flops * cand / (peak * 1e12):.1%}" if peak else ", MFU: unknown peak (SPATIALPROBE_PEAK_TFLOPS)"
        rows.append({
            "benchmark": "gpu",
            "baseline": f"{base:,.0f} (fp32, NCHW)",
            "candidate": f"{cand:,.0f} ({str(mixed).split('.')[-1]} autocast, channels_last{mfu})",
            "ratio": cand / base,
            "target": "",
            "case": f"{arch} training images/s; {torch.cuda.get_device_name()}, {what}, 32 px, 100 classes, batch {BATCH}, "
                     f"{flops / 1e9:.2f} GFLOPs/image forward",
        })
    return rows
