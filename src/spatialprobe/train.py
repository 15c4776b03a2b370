"""Train one network and write its result record.

    python -m spatialprobe.train dataset=cifar10 model=resnet18 model.width=0.25 trainer.max_epochs=1
    python -m spatialprobe.train -m model=vgg16 method=spatial_shuffle k='range(0,14)'

The run directory (Hydra's output dir) receives ``result.json`` (the record), ``metrics.csv``,
``checkpoints/{last,best}.ckpt`` and the composed config. Re-running the same command into the
same directory skips a complete run and resumes an unfinished one from ``last.ckpt``.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from spatialprobe import CONF_DIR
from spatialprobe.config.cli import check_output_overrides, hydra_entry
from spatialprobe.errors import UserError, one_line, reported
from spatialprobe.launch.runner import run, validate
from spatialprobe.run.runtime import hydra_output_dir, hydra_sweep_name

log = logging.getLogger("spatialprobe")

__all__ = ["main", "run", "validate"]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from spatialprobe.config.cli import capture_warnings

    capture_warnings()  # also in jobs of subprocess launchers: dependencies' warnings to the log file
    if hydra_sweep_name() is not None:
        return _sweep_job(cfg)
    with reported():
        if cfg.dry_run:
            validate(cfg)
            print(f"dry run: {cfg.name} is valid; it would run in {hydra_output_dir()}")
            from spatialprobe.launch import cost

            if cost.requested(cfg):
                (line,), total = cost.report([cfg], cfg.paths.cache_dir)
                print(f"  {line}\n{total}")
            return None
        return run(cfg).get("test_top1")


def _sweep_job(cfg: DictConfig) -> float | None:
    """One job of a multirun: a failure is recorded (result.json) and reported, and the sweep goes on.

    The sweep's summary (spatialprobe.launch.sweep.SweepCheck) lists the failed runs and exits non-zero.
    SystemExit (submitit's requeue on preemption / time limit) and KeyboardInterrupt pass through.
    """
    from spatialprobe.run.lock import RunInUse

    try:
        return run(cfg).get("test_top1")
    except RunInUse as err:  # not a failure: the sweep's summary lists it as running elsewhere
        print(f"spatialprobe: {hydra_output_dir()}: not started here: {one_line(err)}", file=sys.stderr, flush=True)
    except UserError as err:
        print(f"spatialprobe: error: {hydra_output_dir()}: {one_line(err)}", file=sys.stderr, flush=True)
    except Exception:
        log.exception("run %s failed", hydra_output_dir())
    return None


def main() -> None:
    hydra_entry(_hydra_main, check_output_overrides, config_name="train", validate=validate)


if __name__ == "__main__":
    main()
