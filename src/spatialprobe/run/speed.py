"""Speed options: channels_last, torch.compile, mixed precision, and multi-device (DDP) runs.

* ``model.channels_last``: the network and the device loader's batches use NHWC memory (fast
  convolutions with cuDNN / tensor cores).
* ``model.compile``: ``torch.compile`` (``true`` or a mode such as ``max-autotune``), in place, so
  parameter names and checkpoints are those of the uncompiled network.
* ``trainer.precision``: Lightning's (``32-true``, ``16-mixed``, ``bf16-mixed``, ...). Checked
  against the device before anything runs: bf16 on a GPU without bfloat16 is an error naming the
  alternatives; fp16 autocast on the CPU falls back to bf16 with a one-line warning.
* The values are checked by :mod:`spatialprobe.config.schema` (``COMPILE``, ``PRECISIONS``); the checks
  that need the device are :func:`check_devices`.
* Threads: in a SLURM job, torch's CPU threads are the job's CPUs (``SLURM_CPUS_PER_TASK``) unless
  ``OMP_NUM_THREADS`` says otherwise (:func:`use_the_jobs_cpus`): without cgroups torch would start one
  thread per core of the node, and threads that outnumber their cores wait on each other.
* DDP: ``trainer=ddp trainer.devices=N trainer.num_nodes=M`` (one process per device). Under
  SLURM, ``ntasks-per-node`` must equal ``trainer.devices``; this is checked against the job's
  environment and against Hydra's submitit launcher config when those are visible.
"""

from __future__ import annotations

import logging
import os
import shutil

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from spatialprobe.errors import ConfigError

log = logging.getLogger("spatialprobe")

ALIASES = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}  # of schema.PRECISIONS
GPU_ACCELERATORS = ("gpu", "cuda")


def _devices(cfg: DictConfig) -> int | None:
    devices = OmegaConf.select(cfg, "trainer.devices")
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices > 0 else None  # -1: all visible devices
    if isinstance(devices, list | tuple | ListConfig):
        return len(devices)
    return None  # "auto", "0,1": left to Lightning


def _launcher_tasks_per_node() -> int | None:
    """tasks_per_node of Hydra's submitit SLURM launcher, when this job was composed with it."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        launcher = HydraConfig.get().launcher
    except Exception:  # no Hydra context: nothing to check
        return None
    if launcher is None or "slurm" not in str(launcher.get("_target_", "")).lower():
        return None
    return launcher.get("tasks_per_node")


def use_the_jobs_cpus() -> int | None:
    """In a SLURM job without ``OMP_NUM_THREADS``: torch's intra-op threads = ``SLURM_CPUS_PER_TASK``; the count set
    (None where nothing was changed)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if "OMP_NUM_THREADS" in os.environ or not cpus.isdigit() or int(cpus) < 1:
        return None
    torch.set_num_threads(int(cpus))
    return int(cpus)


def check_devices(cfg: DictConfig) -> list[str]:
    """Checks against the hardware this process sees; raise ConfigError, or return warnings (logged)."""
    warnings: list[str] = []
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    precision = ALIASES.get(precision, precision)
    gpu = uses_gpu(cfg)
    devices = _devices(cfg)
    if accelerator in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", accelerator, "no CUDA device is visible to this process",
                          ["cpu (trainer=cpu)"])
    if gpu and devices is not None and devices > torch.cuda.device_count():
        raise ConfigError("trainer.devices", devices, f"only {torch.cuda.device_count()} CUDA devices are visible",
                          list(range(1, torch.cuda.device_count() + 1)))
    if gpu and precision.startswith("bf16") and not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability()
        raise ConfigError("trainer.precision", precision, f"{torch.cuda.get_device_name()} (compute capability "
                          f"{major}.{minor}) has no bfloat16 support; bf16 needs compute capability >= 8.0",
                          ["16-mixed", "32-true"])
    if not gpu and precision.startswith("bf16"):
        from spatialprobe.config.resolvers import BF16_CPU_FLAGS, cpu_has_bf16

        if not cpu_has_bf16():
            warnings.append(f"trainer.precision={precision}: this CPU has no bfloat16 instructions (no "
                            f"{' / '.join(BF16_CPU_FLAGS)}), so bf16 is emulated: about 20x slower than 32-true "
                            "(23.5x for the demo network on an AMD EPYC, make bench); trainer.precision=32-true "
                            "runs at full speed")
    if not gpu and precision == "16-mixed":
        warnings.append("trainer.precision=16-mixed: fp16 autocast does not exist on the CPU; Lightning uses "
                        "bf16-mixed instead")
    if OmegaConf.select(cfg, "model.compile", default=False) and not gpu and not (shutil.which("g++") or shutil.which("clang++")):
        raise ConfigError("model.compile", OmegaConf.select(cfg, "model.compile"), "torch.compile on the CPU needs a C++ "
                          "compiler (g++ or clang++) on PATH", [False])
    _check_slurm_tasks(cfg, devices)
    for w in warnings:
        log.warning(w)
    return warnings


def _check_slurm_tasks(cfg: DictConfig, devices: int | None) -> None:
    """One process per device: SLURM's tasks per node must equal trainer.devices for DDP."""
    if devices is None or not str(OmegaConf.select(cfg, "trainer.strategy", default="auto")).startswith("ddp"):
        return
    for source, value in (("the SLURM job's SLURM_NTASKS_PER_NODE", os.environ.get("SLURM_NTASKS_PER_NODE")),
                          ("hydra.launcher.tasks_per_node", _launcher_tasks_per_node())):
        if value is None or str(value).split("(")[0] == "":
            continue
        tasks = int(str(value).split("(")[0])  # SLURM writes "2(x3)" for uneven layouts
        if tasks != devices:
            raise ConfigError("trainer.devices", devices, f"DDP runs one process per device, but {source} is "
                              f"{tasks}; set both to the same number", [tasks])


def is_global_zero() -> bool:
    """Whether this is the first process of a run (the only one in a single-device run).

    Read from the launchers' environment (torchrun / Lightning: RANK, LOCAL_RANK, NODE_RANK; SLURM:
    SLURM_PROCID), because the record is opened before Lightning sets up the processes.
    """
    return all(int(os.environ.get(key) or 0) == 0 for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


#: oneDNN 3.12 (torch 2.13 and 2.14) hangs or segfaults in the backward pass of a strided 1x1 convolution
#: with fewer than this many input channels when its input and weight are channels_last, on CPUs whose best
#: ISA is AVX2 (docs/upstream/onednn_strided_1x1.md). Only networks far narrower than any paper's have such a
#: layer (a ResNet at width 1/16: layer2.0.downsample has 4 input channels).
ONEDNN_MIN_STRIDED_1X1_CHANNELS = 8


def onednn_unsafe_convs(model: torch.nn.Module) -> list[str]:
    """The strided 1x1 convolutions that oneDNN's AVX2 kernels mishandle in channels_last memory."""
    return [name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
            and m.in_channels < ONEDNN_MIN_STRIDED_1X1_CHANNELS]


def uses_gpu(cfg: DictConfig) -> bool:
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    return accelerator in GPU_ACCELERATORS or (accelerator == "auto" and torch.cuda.is_available())


def apply(model: torch.nn.Module, cfg: DictConfig) -> bool:
    """channels_last and torch.compile, in place (parameter names stay those of the plain model).

    Returns whether the network (and so its batches) uses channels_last. On the CPU a network with a
    layer of :func:`onednn_unsafe_convs` stays in NCHW memory, with one warning line: channels_last
    would hang or crash its backward pass on AVX2 CPUs.
    """
    channels_last = bool(OmegaConf.select(cfg, "model.channels_last", default=False))
    if channels_last and not uses_gpu(cfg):
        unsafe = onednn_unsafe_convs(model)
        if unsafe:
            channels_last = False
            log.warning("model.channels_last: off for this network (NCHW memory): %s is a strided 1x1 convolution "
                        "with fewer than %d input channels, whose channels_last backward pass hangs or crashes in "
                        "oneDNN on AVX2 CPUs (README, Troubleshooting)", unsafe[0], ONEDNN_MIN_STRIDED_1X1_CHANNELS)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    mode = OmegaConf.select(cfg, "model.compile", default=False)
    if mode:
        model.compile(mode=None if mode is True else str(mode))
    return channels_last
