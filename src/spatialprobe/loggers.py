"""Experiment loggers: CSV always (metrics.csv in the run directory), W&B when selected."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, Logger


def wandb_tags(cfg: DictConfig) -> list[str]:
    base = [f"model:{cfg.model.name}", f"dataset:{cfg.dataset.name}", f"method:{cfg.method.name}", f"k:{cfg.k}"]
    return base + [str(t) for t in (cfg.logger.get("tags") or [])]


def build_loggers(cfg: DictConfig, run_dir: Path, config: dict, group: str | None, attempt: int = 1) -> list[Logger]:
    # one CSV per attempt (logs/attempt-N/metrics.csv): Lightning's CSV writer replaces an existing
    # metrics.csv, and a resumed run must not lose the history of the attempts before it
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="logs", version=f"attempt-{attempt}")]
    if cfg.logger.name == "wandb" and cfg.logger.mode != "disabled":
        from pytorch_lightning.loggers import WandbLogger  # wandb is slow to import: only when used

        os.environ.setdefault("WANDB_SILENT", "true")
        run_id = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]  # stable across resumes
        loggers.append(
            WandbLogger(
                project=cfg.logger.project,
                entity=cfg.logger.get("entity"),
                group=cfg.logger.get("group") or group or cfg.name,
                tags=wandb_tags(cfg),
                name=cfg.name,
                id=run_id,
                resume="allow",
                save_dir=str(run_dir),
                offline=cfg.logger.mode == "offline",
                config=config,
            )
        )
    return loggers


def finish_loggers(loggers: list[Logger], summary: dict | None = None) -> None:
    """Close every logger; the record's scalar results also go into the W&B run summary."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and summary:
            scalars = {k: v for k, v in summary.items() if isinstance(v, int | float | str) or v is None}
            lg.experiment.summary.update({k: v for k, v in scalars.items() if v is not None})
        lg.finalize("success")
        if type(lg).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.finish()
