"""Experiment loggers: CSV always (metrics.csv in the run directory), W&B when selected.

W&B in one place: the modes a user may give (``logger.mode``, ``WANDB_MODE``), the credentials
check of online mode (before anything runs), the fallback to offline when W&B cannot be reached,
the flat dashboard keys of every run's config, the isolation of one run from the next in the same
process, and the "figures" run of ``spatialprobe.plot --wandb``. wandb and Lightning are imported
only where they are used: validation stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from spatialprobe.config.schema import (
    wandb_mode,  # the modes a user may give, and wandb's aliases (logger.mode, WANDB_MODE)
)
from spatialprobe.config.wandb_login import LOGIN_HELP, require_wandb_login, wandb_credentials  # noqa: F401
from spatialprobe.errors import one_line

log = logging.getLogger("spatialprobe")

def wandb_tags(cfg: DictConfig) -> list[str]:
    base = [f"model:{cfg.model.name}", f"dataset:{cfg.dataset.name}", f"method:{cfg.method.name}", f"k:{cfg.k}"]
    return base + [str(t) for t in (cfg.logger.get("tags") or [])]


def dashboard_keys(cfg: DictConfig, record: dict) -> dict:
    """Flat config keys a W&B dashboard groups and plots by (no nested lookups, no post-processing):
    scatter / parallel-coordinates panels of accuracy (summary) against params, FLOPs, K ..."""
    units = record.get("units") or 0
    return {
        "model_name": cfg.model.name, "arch": cfg.model.arch, "dataset_name": cfg.dataset.name,
        "method_name": cfg.method.name, "k": int(cfg.k), "seed": int(cfg.seed), "units": units,
        "modified_fraction": round(len(record.get("modified_units") or []) / units, 4) if units else 0.0,
        "params": record.get("params"), "flops": record.get("flops"), "receptive_field": record.get("receptive_field"),
    }


def _settings(mode: str, init_timeout: float = 60, finish_timeout: float = 120) -> Any:
    """wandb.Settings: in online mode bounded waits at the start and at the end (the fallbacks)."""
    import wandb

    if mode != "online":
        return wandb.Settings(silent=True)
    return wandb.Settings(silent=True, init_timeout=float(init_timeout), finish_timeout=float(finish_timeout),
                          finish_timeout_raises=True)


def _init_with_fallback(init: Callable[[], Any], kwargs: dict) -> tuple[Any, str | None]:
    """``init()``; when an online run cannot reach W&B, the same run offline, and why."""
    try:
        return init(), None
    except Exception as err:
        if kwargs.get("mode") != "online":
            raise
        import wandb

        reason = f"W&B was unreachable at the start ({type(err).__name__}: {one_line(err)[:300]}); logged offline"
        log.warning("spatialprobe: warning: %s; upload later with `wandb sync`", reason)
        wandb.teardown()  # the W&B service still holds the run's id: a fresh one for the offline run
        kwargs["mode"] = "offline"
        kwargs["settings"] = wandb.Settings(silent=True)
        return init(), reason


@cache
def _logger_class() -> type:
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.loggers.logger import rank_zero_experiment
    from pytorch_lightning.utilities import rank_zero_only

    class FallbackWandbLogger(WandbLogger):
        """Lightning's WandbLogger, whose run falls back to offline when W&B is unreachable at the start, and
        whose W&B steps are the training steps: W&B's ``_step`` is ``trainer/global_step``, so an attempt that
        resumes (a requeue after preemption, a re-run after a kill) continues the run's steps where the
        checkpoint left them instead of from 0 (an offline run file starts at ``_step`` 0 otherwise, and W&B
        drops every row below the run's last step when the attempts are synced into one run)."""

        fallback: str | None = None

        @rank_zero_only
        def log_metrics(self, metrics: Any, step: int | None = None) -> None:
            if step is None or self._wandb_init.get("sync_tensorboard"):
                return WandbLogger.log_metrics(self, metrics, step)
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}" if self._prefix else k: v
                       for k, v in metrics.items()}
            self.experiment.log({**metrics, "trainer/global_step": step}, step=int(step))

        @property
        @rank_zero_experiment
        def experiment(self) -> Any:
            if self._experiment is not None:
                return self._experiment
            run, self.fallback = _init_with_fallback(lambda: WandbLogger.experiment.fget(self), self._wandb_init)
            return run

    return FallbackWandbLogger


def build_loggers(cfg: DictConfig, run_dir: Path, config: dict, group: str | None, attempt: int = 1) -> list:
    from pytorch_lightning.loggers import CSVLogger

    # one CSV per attempt (logs/attempt-N/metrics.csv): Lightning's CSV writer replaces an existing
    # metrics.csv, and a resumed run must not lose the history of the attempts before it
    loggers: list = [CSVLogger(save_dir=str(run_dir), name="logs", version=f"attempt-{attempt}")]
    mode = wandb_mode(cfg.logger.mode) if cfg.logger.name == "wandb" else "disabled"
    if mode != "disabled":
        os.environ.setdefault("WANDB_SILENT", "true")
        run_id = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]  # stable across resumes
        loggers.append(_logger_class()(
            project=cfg.logger.project,
            entity=cfg.logger.get("entity"),
            group=cfg.logger.get("group") or group or cfg.name,
            job_type="train",
            tags=wandb_tags(cfg),
            name=cfg.name,
            id=run_id,
            resume="allow",
            save_dir=str(run_dir),
            mode=mode,  # to wandb.init; Lightning's offline=True would write WANDB_MODE=dryrun into os.environ
            settings=_settings(mode, cfg.logger.init_timeout, cfg.logger.finish_timeout),
            config=config,
        ))
    return loggers


def finish_loggers(loggers: list, summary: dict | None = None) -> dict:
    """Close every logger; the record's scalar results also go into the W&B run summary.

    Returns the record's W&B fields (``wandb_id``, ``wandb_mode``, ``wandb_dir``, ``wandb_fallback``):
    a run whose upload could not finish (the network failed) is complete all the same, its data
    stays in ``wandb_dir`` for ``wandb sync``, and ``wandb_fallback`` says what happened.
    """
    fields: dict = {}
    for lg in loggers:
        if not hasattr(lg, "fallback"):
            lg.finalize("success")
            continue
        run = lg.experiment
        sync_dir = str(run.settings.sync_dir)
        fields.update(wandb_id=run.id, wandb_mode="offline" if run.offline else "online",
                      wandb_dir=sync_dir, wandb_fallback=lg.fallback)
        try:
            scalars = {k: v for k, v in (summary or {}).items() if isinstance(v, int | float | str)}
            run.summary.update(scalars)
            lg.finalize("success")
            run.finish()
        except Exception as err:  # finish_timeout passed (the network is gone), the W&B service died ...
            note = (f"upload did not finish ({type(err).__name__}: {one_line(err)[:200]}); "
                    f"the run's data stays in {sync_dir}: wandb sync {sync_dir}")
            fields["wandb_fallback"] = "; ".join(x for x in (lg.fallback, note) if x)
            log.warning("spatialprobe: warning: W&B %s", note)
    return fields


@contextlib.contextmanager
def isolated_run() -> Iterator[None]:
    """Around one run: the next run in the same process (Hydra's basic launcher, search_k) starts as
    if it were alone. Whatever the run's loggers put into ``os.environ`` (wandb and Lightning write
    WANDB_* variables, which ``logger.mode`` reads through ${oc.env:WANDB_MODE}) is undone, and a
    W&B run a failed run left open is closed as failed, so no later run logs into it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            with contextlib.suppress(Exception):
                wandb.finish(exit_code=1)
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


# ---- the "figures" run of spatialprobe.plot --wandb ------------------------------------------------

def _wandb_table(df) -> Any:
    import wandb

    df = df.astype(object).where(df.notna(), None)  # NaN cells as empty, whatever the column's type
    return wandb.Table(columns=[str(c) for c in df.columns], data=df.values.tolist())


def log_figures(outputs: list, outdir: Path, *, project: str, entity: str | None, group: str, mode: str,
                config: dict) -> dict:
    """One W&B run (job_type ``figures``) in ``group`` holding everything ``outputs`` lists:
    every PNG as an image (``figures/<name>``), every CSV table as a wandb.Table (``tables/<name>``)
    and every chart registered with the figures (``outputs.charts``) as a native line-series chart
    (``charts/<name>``). Returns the run's id, mode, directory and fallback note."""
    import pandas as pd
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs = dict(project=project, entity=entity, group=group, job_type="figures", name=f"figures-{group}",
                  id=hashlib.sha1(f"figures:{project}:{group}".encode()).hexdigest()[:12], resume="allow",
                  tags=["figures"], dir=str(outdir), mode=mode, config=config, settings=_settings(mode))
    run, fallback = _init_with_fallback(lambda: wandb.init(**kwargs), kwargs)
    data: dict = {}
    for path in map(Path, outputs):
        if path.suffix == ".png":
            data[f"figures/{path.stem}"] = wandb.Image(str(path), caption=path.stem)
        elif path.suffix == ".csv":
            data[f"tables/{path.stem}"] = _wandb_table(pd.read_csv(path))
    for name, chart in getattr(outputs, "charts", {}).items():
        lines = [(series, pts.sort_values("x")) for series, pts in chart.points.groupby("series", sort=True)]
        data[f"charts/{name}"] = wandb.plot.line_series(
            xs=[pts["x"].tolist() for _, pts in lines], ys=[pts["y"].tolist() for _, pts in lines],
            keys=[str(s) for s, _ in lines], title=chart.title, xname=chart.xname)
    run.log(data)
    info = {"wandb_id": run.id, "wandb_mode": "offline" if run.offline else "online",
            "wandb_dir": str(run.settings.sync_dir), "wandb_fallback": fallback}
    try:
        run.finish()
    except Exception as err:
        info["wandb_fallback"] = f"upload did not finish ({type(err).__name__}); wandb sync {info['wandb_dir']}"
    return info
