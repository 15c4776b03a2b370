"""Peak FLOP/s of common GPUs, for model FLOP utilisation (make gpu-check) and sweep costs (dry runs).

Dense (no sparsity) peaks from the vendors' data sheets, in TFLOP/s: ``bf16`` is the tensor-core
rate with fp32 accumulation (what autocast uses; fp16 where the GPU has no bfloat16: V100, T4),
``fp32`` the plain fp32 rate (no TF32). Looked up by the name torch reports
(``torch.cuda.get_device_name()``, e.g. "NVIDIA H100 80GB HBM3"); a GPU missing here, or a
different clock, takes an explicit peak (``--peak-tflops`` / ``SPATIALPROBE_PEAK_TFLOPS`` /
``cost.peak_tflops``). Stdlib only: a dry run reads this without importing torch.
"""

from __future__ import annotations

import os
import re

#: name (as it appears in the device name) -> (bf16 or fp16 tensor dense TFLOP/s, fp32 TFLOP/s)
PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 67.0),
    "GH200": (989.0, 67.0),
    "H100": (989.0, 67.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    "H100 NVL": (835.0, 60.0),
    "H100 PCIe": (756.0, 51.0),
    "A100": (312.0, 19.5),
    "A40": (149.7, 37.4),
    "A10": (125.0, 31.2),
    "L40S": (362.0, 91.6),
    "L40": (181.0, 90.5),
    "L4": (121.0, 30.3),
    "V100": (125.0, 15.7),  # fp16 tensor cores; no bfloat16
    "T4": (65.0, 8.1),      # fp16 tensor cores; no bfloat16
}


def lookup(device_name: str) -> str | None:
    """The table's key for a device name: the longest key found in it as a whole word ("A10" is not "A100")."""
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![0-9A-Za-z]){re.escape(key)}(?![0-9A-Za-z])", device_name, flags=re.IGNORECASE):
            return key
    return None


def peak_tflops(device_name: str, precision: str = "bf16", override: float | None = None) -> float | None:
    """Peak TFLOP/s of the device for ``bf16`` (mixed precision) or ``fp32``; ``override`` (or
    $SPATIALPROBE_PEAK_TFLOPS) wins; None when the GPU is not in the table."""
    if override is None and os.environ.get("SPATIALPROBE_PEAK_TFLOPS"):
        override = float(os.environ["SPATIALPROBE_PEAK_TFLOPS"])
    if override is not None:
        return float(override)
    key = lookup(device_name)
    if key is None:
        return None
    bf16, fp32 = PEAK_TFLOPS[key]
    return fp32 if precision == "fp32" else bf16
