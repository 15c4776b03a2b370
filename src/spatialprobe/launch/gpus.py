"""The GPUs a local sweep may use, and how its slots share them (``hydra/launcher=local``'s
``gpus_per_node``; the launcher plugin ``hydra_plugins.spatialprobe_launcher`` and the sweep check use it)."""

from __future__ import annotations

import os

from spatialprobe.errors import ConfigError


def visible_gpus() -> list[str]:
    """The GPU ids jobs may use: the entries of $CUDA_VISIBLE_DEVICES if set, else every GPU here."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def describe(gpus: list[str]) -> str:
    source = "CUDA_VISIBLE_DEVICES" if "CUDA_VISIBLE_DEVICES" in os.environ else "on this machine"
    return f"{len(gpus)} GPU(s) visible ({source}: {','.join(gpus) or 'none'})"


def check_gpus(per_job: int, gpus: list[str] | None = None) -> None:
    """Refuse ``gpus_per_node`` above the number of visible GPUs (one line, exit 2 through spatialprobe)."""
    if per_job <= 0:
        return
    gpus = visible_gpus() if gpus is None else gpus
    if per_job > len(gpus):
        raise ConfigError("hydra.launcher.gpus_per_node", per_job, f"only {describe(gpus)}",
                          [f"0..{len(gpus)}"])


def gpu_slots(gpus: list[str], slots: int, per_job: int) -> list[list[str]]:
    """The GPUs of every slot of the window: slot i takes ``gpus[i*per_job:(i+1)*per_job]``; there are
    ``slots`` of them, or fewer when fewer whole groups of ``per_job`` GPUs are visible."""
    if per_job <= 0:
        return [[] for _ in range(slots)]
    check_gpus(per_job, gpus)
    fit = min(slots, len(gpus) // per_job)
    return [gpus[i * per_job:(i + 1) * per_job] for i in range(fit)]
