"""GPU: training images/s and model FLOP utilisation of VGG-16-BN and ResNet-50 on 32 px data.

The throughput rows of ``make gpu-check`` (benchmarks/gpu_check.py, which also checks the loader,
the shuffle and the CLI on the GPU), without torch.compile; a row saying so where no CUDA device
exists.
"""

from __future__ import annotations

import argparse

import torch


def run(args) -> list[dict]:
    if not torch.cuda.is_available():
        return [{"benchmark": "gpu", "case": "training images/s and MFU: skipped, no CUDA device on this machine",
                 "baseline": "", "candidate": "", "ratio": None, "target": ""}]
    from gpu_check import Setup, throughput_rows

    options = argparse.Namespace(device="cuda", tiny=False, quick=bool(getattr(args, "quick", False)),
                                 skip_compile=True, peak_tflops=None)
    return throughput_rows(Setup(options), {})
