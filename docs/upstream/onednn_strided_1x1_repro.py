"""Minimal reproduction: oneDNN hangs or segfaults in the backward pass of a strided 1x1 convolution
with fewer than 8 input channels in channels_last memory, on an AVX2 CPU (no AVX-512).

Plain PyTorch, nothing of spatialprobe. Every case runs in a child process with a time limit, so the
script survives the crash and the hang and prints one line per case:

    python docs/upstream/onednn_strided_1x1_repro.py            # the cases below
    python docs/upstream/onednn_strided_1x1_repro.py --case 4 8 1 2 32 16 cl   # one case, in this process

Seen on an AMD EPYC (AVX2, no AVX-512), 2 cores, torch 2.14.1+cu130 and 2.13.0+cpu (both oneDNN v3.12.0):
`in=4 k=1 stride=2 channels_last` hangs (2 threads) or segfaults (OMP_NUM_THREADS=1), also with
ATEN_CPU_CAPABILITY=default; it passes with DNNL_MAX_CPU_ISA=AVX or SSE41, with NCHW memory, with
torch.backends.mkldnn.enabled=False, with >= 8 input channels, and when only one of the input and
weight gradients is asked for.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

# (in_channels, out_channels, kernel, stride, height = width, batch, memory format)
CASES = [
    (4, 8, 1, 2, 32, 16, "cl"),     # fails: ResNet-18 at width 1/16, layer2.0.downsample
    (3, 8, 1, 2, 32, 16, "cl"),     # fails
    (6, 8, 1, 2, 64, 16, "cl"),     # fails
    (4, 8, 1, 2, 32, 16, "nchw"),   # passes: NCHW memory
    (8, 16, 1, 2, 32, 16, "cl"),    # passes: 8 input channels
    (4, 8, 1, 1, 32, 16, "cl"),     # passes: stride 1
    (4, 8, 3, 2, 32, 16, "cl"),     # passes: 3x3 kernel
]


def run_case(cin: int, cout: int, k: int, stride: int, size: int, batch: int, fmt: str, steps: int = 5) -> None:
    import torch

    memory = torch.channels_last if fmt == "cl" else torch.contiguous_format
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False).to(memory_format=memory)
    x = torch.randn(batch, cin, size, size).contiguous(memory_format=memory).requires_grad_(True)
    for _ in range(steps):  # input and weight gradients in one convolution_backward call
        conv(x).sum().backward()


def describe() -> str:
    import torch

    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
        have = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
        flags = f"{model}; " + " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have)
    onednn = next((ln.strip() for ln in torch.__config__.show().splitlines() if "DNN" in ln), "oneDNN: ?")
    return (f"torch {torch.__version__}, {onednn}, {platform.machine()}, {flags}, "
            f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs=7, metavar=("IN", "OUT", "K", "STRIDE", "SIZE", "BATCH", "FMT"))
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as hung")
    args = parser.parse_args()
    if args.case:
        *numbers, fmt = args.case
        run_case(*map(int, numbers), fmt)
        print("ok")
        return 0
    print(describe(), flush=True)
    failed = 0
    for case in CASES:
        cmd = [sys.executable, __file__, "--case", *map(str, case)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            result = "ok" if p.returncode == 0 else f"crashed (exit status {p.returncode})"
        except subprocess.TimeoutExpired:
            result = f"hung (no answer in {args.timeout:g} s)"
        failed += result != "ok"
        cin, cout, k, stride, size, batch, fmt = case
        print(f"in={cin} out={cout} kernel={k} stride={stride} {size}x{size} batch={batch} {fmt:5s}: {result}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
