"""Where a run writes: its output directory (from Hydra), and the check that it can write there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from spatialprobe.errors import UserError

# A run writes checkpoints: refuse to start with less free space than this (MiB, overridable).
MIN_FREE_MB = 200


def hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


def hydra_job_num() -> int | None:
    """The job's number in a multirun (Hydra's ``#N``), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return int(HydraConfig.get().job.num)


def hydra_sweep_name() -> str | None:
    """The sweep directory's name in a multirun job (used as the W&B group), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


def ensure_writable(directory: Path, min_free_mb: float | None = None) -> None:
    """Fail before any work if ``directory`` cannot be created, written, or is (nearly) full."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(f"output directory {directory} is not writable ({err.strerror or err}); "
                        f"set hydra.run.dir (or paths.run_root) to a writable place") from None
    if min_free_mb is None:
        min_free_mb = float(os.environ.get("SPATIALPROBE_MIN_FREE_MB", MIN_FREE_MB))
    free = shutil.disk_usage(directory).free
    if free < min_free_mb * 2**20:
        raise UserError(f"output directory {directory} has only {free / 2**20:.0f} MiB free "
                        f"(need {min_free_mb:.0f} MiB for checkpoints and records; SPATIALPROBE_MIN_FREE_MB sets it)")
