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
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR, __version__
from .config import hydra_entry, require_choice, require_number
from .errors import ConfigError, UserError, one_line, reported
from .records import RunRecord, config_hash, git_state
from .runtime import (
    check_output_overrides,
    ensure_writable,
    hydra_job_num,
    hydra_output_dir,
    hydra_sweep_name,
)

log = logging.getLogger("spatialprobe")


def validate(cfg: DictConfig) -> None:
    """Every check that needs neither data nor a model; runs before anything is written."""
    from . import cost, data, loggers, models, speed, surgery, tasks

    require_number(cfg, "seed", integer=True, minimum=0)
    data.validate(cfg)
    models.validate(cfg)
    surgery.validate(cfg)
    tasks.validate(cfg)  # task (classify / augshift) and eval.consistency
    require_choice(cfg, "recipe.optimizer", ["sgd", "adam"])
    require_choice(cfg, "recipe.schedule", ["multistep", "onecycle", "cosine", "constant"])
    require_number(cfg, "recipe.lr", minimum=0, exclusive_minimum=True)
    require_number(cfg, "recipe.batch_size", integer=True, minimum=1)
    require_number(cfg, "recipe.lr_scale_batch", integer=True, minimum=1, optional=True)
    speed.validate(cfg)  # channels_last, compile, precision
    cost.validate(cfg)  # dry-run cost estimate: cost.gpu, cost.mfu, ...
    require_number(cfg, "recipe.weight_decay", minimum=0)
    require_number(cfg, "trainer.max_epochs", integer=True, minimum=1)
    require_number(cfg, "checkpoint.every_n_steps", integer=True, minimum=1, optional=True)
    require_number(cfg, "checkpoint.every_minutes", minimum=0, exclusive_minimum=True, optional=True)
    require_number(cfg, "debug.kill_at_step", integer=True, minimum=0, optional=True)
    require_number(cfg, "debug.crash_at_epoch", integer=True, minimum=0, optional=True)
    only = cfg.debug.get("only_jobs")
    if only is not None and not (OmegaConf.is_list(only) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in only)):
        raise ConfigError("debug.only_jobs", only, "must be a list of job numbers of the multirun", ["[0]", "[1,3]"])
    loggers.validate(cfg)  # logger.name, W&B mode and, online, credentials


def debug_faults(cfg: DictConfig, run_dir: Path) -> list:
    """The fault-injection callback, for the jobs ``debug.only_jobs`` selects (all by default)."""
    from .callbacks import DebugFaults

    only = cfg.debug.get("only_jobs")
    if only is not None and hydra_job_num() not in set(only):
        return []
    return [DebugFaults(run_dir, cfg.debug.kill_at_step, cfg.debug.crash_at_epoch)]


def _metric(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else round(float(value), 4)


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train and test one configuration; return its (complete) result record."""
    from .loggers import isolated_run
    from .speed import check_devices, is_global_zero

    validate(cfg)
    check_devices(cfg)  # GPU present, bf16 support, devices vs SLURM tasks: before anything is written
    run_dir = Path(run_dir or hydra_output_dir() or Path(cfg.paths.run_root) / cfg.name)
    ensure_writable(run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chash = config_hash(resolved)
    record = RunRecord(run_dir, write=is_global_zero())  # DDP: every process runs this; rank 0 keeps the record
    if record.data.get("config_hash") not in (None, chash) and record.status == "complete":
        raise UserError(f"{run_dir} already holds a complete run of a different configuration "
                        f"(config_hash {record.data['config_hash']}); choose another hydra.run.dir")
    if cfg.resume and record.is_complete_for(chash):
        log.info("%s: already complete (config_hash %s), skipped", run_dir, chash)
        if hydra_sweep_name() is None:  # in a sweep, its progress lines say so
            print(f"skipped, already complete: {record.path}")
        return record.data
    ckpt_dir = run_dir / "checkpoints"
    last_ckpt = ckpt_dir / "last.ckpt"
    resume_from = last_ckpt if cfg.resume and last_ckpt.is_file() and record.data.get("config_hash") == chash else None

    record.start(
        resolved, chash,
        name=cfg.name, model=cfg.model.name, arch=cfg.model.arch, dataset=cfg.dataset.name,
        method=cfg.method.name, k=int(cfg.k), seed=int(cfg.seed), spatialprobe_version=__version__,
        **git_state(Path(__file__).resolve().parents[2]),
    )
    try:
        with isolated_run():  # nothing this run's loggers do reaches the next run of the process
            result = _train(cfg, run_dir, resolved, record, resume_from)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            reason = "interrupted (KeyboardInterrupt); re-run to resume"
        elif isinstance(err, SystemExit):
            reason = str(err) if str(err) and not str(err).lstrip("-").isdigit() else f"interrupted (exit {err.code})"
        else:
            reason = f"{type(err).__name__}: {err}"
        record.fail(" ".join(reason.split()))
        raise
    return result


def _train(cfg: DictConfig, run_dir: Path, resolved: dict, record: RunRecord, resume_from: Path | None) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from . import surgery
    from .callbacks import AtomicCheckpointIO, RecordProgress, ResumableCheckpoint, SeedSchedule
    from .data import build_datamodule
    from .loggers import build_loggers, dashboard_keys, finish_loggers
    from .measure import count_flops, count_params, feature_maps, receptive_field
    from .models import build_model
    from .speed import apply as apply_speed_options
    from .streams import seed_global
    from .tasks import build_module, record_fields
    from .tasks import callbacks as task_callbacks

    t0 = time.time()
    dm = build_datamodule(cfg)  # reads (or decodes once and caches) the data; fails here if missing
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    size = int(cfg.dataset.image_size)
    model = build_model(cfg.model, int(cfg.dataset.num_classes), size)
    report = surgery.apply(model, cfg.method, int(cfg.k), size)  # after the build: same init for every K
    record.update(
        params=count_params(model), flops=count_flops(model, size), units=len(model.unit_names()),
        modified_units=report.modified_units, stripped_units=report.stripped_units,
        modified_unit_names=report.unit_names, receptive_field=receptive_field(model),
        feature_maps=feature_maps(model, size), data_sizes=dm.sizes(),
    )
    apply_speed_options(model, cfg)  # channels_last / torch.compile, after params and FLOPs are counted
    module = build_module(cfg, model, resolved, steps_per_epoch=dm.train_batches)  # Classifier, or AugShift

    eval_seed = cfg.eval.seed if cfg.eval.seed is not None else int(cfg.seed) + 1
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val_top1", mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    loggers = build_loggers(cfg, run_dir, {**resolved, **dashboard_keys(cfg, record.data)}, hydra_sweep_name(),
                            attempt=int(record.data["attempts"]))
    resumable = ResumableCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg.checkpoint.every_n_steps,
                                    cfg.checkpoint.every_minutes, bool(cfg.checkpoint.on_signal))
    callbacks = [checkpoint, resumable, SeedSchedule(int(cfg.seed), int(eval_seed)), LearningRateMonitor("epoch"),
                 RecordProgress(record), *debug_faults(cfg, run_dir),
                 *task_callbacks(cfg, int(eval_seed))]
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))  # submitit, not Lightning, requeues the job
    trainer_args = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if v is not None}
    trainer = pl.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, plugins=plugins,
                         **trainer_args)

    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from else None)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if "val_top1" not in fit_metrics and trainer.limit_val_batches:
        fit_metrics.update({k: float(v) for k, v in trainer.validate(module, datamodule=dm, verbose=False)[0].items()})
    seed_global(int(eval_seed), "final_test")
    final = trainer.test(module, datamodule=dm, verbose=False)[0]
    best_path = checkpoint.best_model_path
    best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    best = final
    if cfg.eval.test_best and best_path and Path(best_path).is_file() and best_score != fit_metrics.get("val_top1"):
        best = trainer.test(module, datamodule=dm, ckpt_path=best_path, verbose=False)[0]
    fields = {
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "val_top1_final": _metric(fit_metrics, "val_top1"),
        "val_top1_best": round(best_score, 4) if best_score is not None else _metric(fit_metrics, "val_top1"),
        "test_top1_final": _metric(final, "test_top1"),
        "test_top5_final": _metric(final, "test_top5"),
        "test_loss_final": _metric(final, "test_loss"),
        "test_top1_best": _metric(best, "test_top1"),
        "train_loss_final": _metric(fit_metrics, "train_loss_epoch"),
        "train_time_s": round(time.time() - t0, 2),
        "checkpoints": {"last": str(run_dir / "checkpoints" / "last.ckpt") if (run_dir / "checkpoints" / "last.ckpt").is_file() else None,
                        "best": best_path or None},
        "eval_seed": int(eval_seed),
    }
    fields.update(record_fields(cfg, final, best))  # task, test_cons{S}
    fields["val_top1"] = fields["val_top1_final"]
    fields["test_top1"] = fields["test_top1_final"]
    if not record.write:  # DDP ranks > 0: rank 0 finishes the loggers, writes the record and reports
        return record.data
    fields.update(finish_loggers(loggers, summary={**fields, "params": record.data["params"],
                                                   "flops": record.data["flops"], "k": int(cfg.k),
                                                   "method": cfg.method.name}))  # + wandb_* fields
    record.complete(**fields)
    line = (f"{cfg.name}: test_top1={fields['test_top1']} (best-val checkpoint: {fields['test_top1_best']}), "
            f"params={record.data['params']:,}, record: {record.path}")
    if hydra_sweep_name() is None:  # in a sweep, its progress line reports the result
        print(line, flush=True)
    log.info(line)
    return record.data


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    from .console import capture_warnings

    capture_warnings()  # also in jobs of subprocess launchers: dependencies' warnings to the log file
    if hydra_sweep_name() is not None:
        return _sweep_job(cfg)
    with reported():
        if cfg.dry_run:
            validate(cfg)
            print(f"dry run: {cfg.name} is valid; it would run in {hydra_output_dir()}")
            from . import cost

            if cost.requested(cfg):
                (line,), total = cost.report([cfg], cfg.paths.cache_dir)
                print(f"  {line}\n{total}")
            return None
        return run(cfg).get("test_top1")


def _sweep_job(cfg: DictConfig) -> float | None:
    """One job of a multirun: a failure is recorded (result.json) and reported, and the sweep goes on.

    The sweep's summary (spatialprobe.sweep.SweepCheck) lists the failed runs and exits non-zero.
    SystemExit (submitit's requeue on preemption / time limit) and KeyboardInterrupt pass through.
    """
    try:
        return run(cfg).get("test_top1")
    except UserError as err:
        print(f"spatialprobe: error: {hydra_output_dir()}: {one_line(err)}", file=sys.stderr, flush=True)
    except Exception:
        log.exception("run %s failed", hydra_output_dir())
    return None


def main() -> None:
    hydra_entry(_hydra_main, check_output_overrides)


if __name__ == "__main__":
    main()
