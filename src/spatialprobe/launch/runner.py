"""Run one configuration: train, test, and write its result record (the library behind ``spatialprobe.train``).

The runner asks the configuration's task (:mod:`spatialprobe.tasks`) for everything task-specific: the
network built on the modified registry network, the Lightning module, the metric that picks the best
checkpoint (``task.monitor``), extra callbacks and record fields. Every metric the task logs in its test
epoch is recorded as it is (final network) and with ``_best`` (the best-validation checkpoint).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import spatialprobe
from spatialprobe.config.schema import recipe_note, validate_train
from spatialprobe.errors import UserError
from spatialprobe.run.records import RunRecord, config_diff, config_hash, git_state, rounded
from spatialprobe.run.runtime import ensure_writable, hydra_job_num, hydra_output_dir, hydra_sweep_name

log = logging.getLogger("spatialprobe")
FILE_ONLY = {"console": False}  # a line printed to stdout is logged to the run's log file only (console.OwnLinesOnly)
REPO = Path(spatialprobe.__file__).resolve().parents[2]  # the checkout, for the record's git commit


def validate(cfg: DictConfig) -> None:
    """Every check that needs neither data nor a device (spatialprobe.config.schema); runs before anything is written."""
    validate_train(cfg)


def debug_faults(cfg: DictConfig, run_dir: Path) -> list:
    """The fault-injection callback, for the jobs ``debug.only_jobs`` selects (all by default)."""
    from spatialprobe.run.callbacks import DebugFaults

    only = cfg.debug.get("only_jobs")
    if only is not None and hydra_job_num() not in set(only):
        return []
    return [DebugFaults(run_dir, cfg.debug.kill_at_step, cfg.debug.crash_at_epoch, cfg.debug.get("hang_at_step"),
                        cfg.debug.get("kill_during"))]


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train and test one configuration; return its (complete) result record."""
    validate(cfg)  # before torch is imported: a bad value is answered at once
    note = recipe_note(cfg)
    if note:
        print(note, file=sys.stderr, flush=True)
    from spatialprobe.run.loggers import isolated_run
    from spatialprobe.run.speed import check_devices, is_global_zero

    check_devices(cfg)  # GPU present, bf16 support, devices vs SLURM tasks: before anything is written
    run_dir = Path(run_dir or hydra_output_dir() or Path(cfg.paths.run_root) / cfg.name)
    ensure_writable(run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chash = config_hash(resolved)
    record = RunRecord(run_dir, write=is_global_zero())  # DDP: every process runs this; rank 0 keeps the record
    if record.data.get("config_hash") not in (None, chash) and record.status == "complete":
        differ = config_diff(record.data.get("config") or {}, resolved)
        raise UserError(f"{run_dir} already holds a complete run of a different configuration "
                        f"(config_hash {record.data['config_hash']}"
                        f"{'; it differs in ' + ', '.join(differ[:6]) if differ else ''}); choose another "
                        "hydra.run.dir")
    if cfg.resume and record.is_complete_for(chash):
        log.info("%s: already complete (config_hash %s), skipped", run_dir, chash, extra=FILE_ONLY)
        if hydra_sweep_name() is None:  # in a sweep, its progress lines say so
            print(f"skipped, already complete: {record.path}", flush=True)
        return record.data
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    resume_from = last_ckpt if cfg.resume and last_ckpt.is_file() and record.data.get("config_hash") == chash else None

    record.start(
        resolved, chash,
        name=cfg.name, model=cfg.model.name, arch=cfg.model.arch, dataset=cfg.dataset.name,
        method=cfg.method.name, k=int(cfg.k), seed=int(cfg.seed), spatialprobe_version=spatialprobe.__version__,
        **git_state(REPO), resumed_from=None,
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


def metric_fields(final: dict, best: dict) -> dict:
    """Every metric of the test epoch as the record holds it: ``<metric>`` for the final network and
    ``<metric>_best`` for the best-validation checkpoint; ``test_top1_final`` / ``test_top5_final`` /
    ``test_loss_final`` name the final values of the classification metrics too."""
    fields = {}
    for key in final:
        fields[key] = rounded(final.get(key))
        fields[f"{key}_best"] = rounded(best.get(key))
    for key in ("test_top1", "test_top5", "test_loss"):
        if key in final:
            fields[f"{key}_final"] = fields[key]
    return fields


def _train(cfg: DictConfig, run_dir: Path, resolved: dict, record: RunRecord, resume_from: Path | None) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from spatialprobe import surgery, tasks
    from spatialprobe.data import build_datamodule
    from spatialprobe.models import build_model
    from spatialprobe.run.callbacks import (
        AtomicCheckpointIO,
        RecordProgress,
        ResumableCheckpoint,
        SeedSchedule,
    )
    from spatialprobe.run.loggers import build_loggers, dashboard_keys, finish_loggers
    from spatialprobe.run.measure import count_flops, count_params, feature_maps, receptive_field
    from spatialprobe.run.speed import apply as apply_speed_options
    from spatialprobe.run.speed import is_global_zero
    from spatialprobe.run.streams import seed_global

    t0 = time.time()
    task = tasks.get(cfg)
    dm = build_datamodule(cfg)  # reads (or decodes once and caches) the data; fails here if missing
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    size = int(cfg.dataset.image_size)
    model = build_model(cfg.model, int(cfg.dataset.num_classes), size)
    report = surgery.apply(model, cfg.method, int(cfg.k), size)  # after the build: same init for every K
    model = task.network(cfg, model)  # task=detect: the modified network becomes a detector's backbone
    record.update(
        params=count_params(model), flops=count_flops(model, size), units=len(model.unit_names()),
        modified_units=report.modified_units, stripped_units=report.stripped_units,
        modified_unit_names=report.unit_names, receptive_field=receptive_field(model, report.modified_units),
        feature_maps=feature_maps(model, size), data_sizes=dm.sizes(),
    )
    # channels_last / torch.compile, after params and FLOPs are counted; the batches follow the network's memory format
    dm.channels_last = apply_speed_options(model, cfg)
    record.update(channels_last=dm.channels_last)
    module = task.module(cfg, model, resolved, steps_per_epoch=dm.train_batches, datamodule=dm)

    eval_seed = cfg.eval.seed if cfg.eval.seed is not None else int(cfg.seed) + 1
    watched = str(cfg.task.monitor)  # val_top1; val_miou for segmentation, val_map50 for detection
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=watched, mode="max",
                                 save_top_k=1, enable_version_counter=False)
    # last.ckpt at every epoch end (Lightning's save_last=True writes it only when best.ckpt improves)
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    loggers = build_loggers(cfg, run_dir, {**resolved, **dashboard_keys(cfg, record.data)}, hydra_sweep_name(),
                            attempt=int(record.data["attempts"]))
    resumable = ResumableCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg.checkpoint.every_n_steps,
                                    cfg.checkpoint.every_minutes, bool(cfg.checkpoint.on_signal),
                                    deadline_s=cfg.checkpoint.signal_deadline_s, on_stuck=record.fail,
                                    on_resume=lambda resumed: record.update(resumed_from=resumed))
    callbacks = [checkpoint, last, resumable, SeedSchedule(int(cfg.seed), int(eval_seed)), LearningRateMonitor("epoch"),
                 RecordProgress(record), *debug_faults(cfg, run_dir), *task.callbacks(cfg, int(eval_seed)),
                 # the model summary through logging (the run's log file), also where `rich` is installed: Lightning's
                 # default would then be RichModelSummary, which prints its table on the console
                 ModelSummary()]
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))  # submitit, not Lightning, requeues the job
    trainer_args = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if v is not None}
    trainer = pl.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, plugins=plugins,
                         **trainer_args)

    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from else None)
    # a fit resumed from the final checkpoint trains nothing: the metrics of the training it finished
    fit_metrics = {**resumable.restored_metrics, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
    if watched not in fit_metrics and trainer.limit_val_batches:
        fit_metrics.update({k: float(v) for k, v in trainer.validate(module, datamodule=dm, verbose=False)[0].items()})
    seed_global(int(eval_seed), "final_test")
    final = trainer.test(module, datamodule=dm, verbose=False)[0]
    best_path = checkpoint.best_model_path
    best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    best = final
    if cfg.eval.test_best and best_path and Path(best_path).is_file() and best_score != fit_metrics.get(watched):
        best = trainer.test(module, datamodule=dm, ckpt_path=best_path, verbose=False)[0]
    last_path = run_dir / "checkpoints" / "last.ckpt"
    fields = {
        "task": task.name,
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        f"{watched}_final": rounded(fit_metrics.get(watched)),
        f"{watched}_best": rounded(best_score) if best_score is not None else rounded(fit_metrics.get(watched)),
        **metric_fields(final, best),
        "train_loss_final": rounded(fit_metrics.get("train_loss_epoch")),
        "train_time_s": round(time.time() - t0, 2),
        "checkpoints": {"last": str(last_path) if last_path.is_file() else None, "best": best_path or None},
        "eval_seed": int(eval_seed),
    }
    if watched != "val_top1":  # val_top1 picks no checkpoint: it is recorded as measured
        fields.update(val_top1_final=rounded(fit_metrics.get("val_top1")), val_top1_best=None)
    fields["val_top1"] = fields["val_top1_final"]
    fields.update(task.record_fields(cfg, module))  # detection: mAP, AP per class, errors, example boxes
    if not record.write:  # DDP ranks > 0: rank 0 finishes the loggers, writes the record and reports
        return record.data
    fields.update(finish_loggers(loggers, summary={**fields, "params": record.data["params"],
                                                   "flops": record.data["flops"], "k": int(cfg.k),
                                                   "method": cfg.method.name}))  # + wandb_* fields
    record.complete(**fields)
    key = "map50" if "map50" in fields else "test_top1"
    line = (f"{cfg.name}: {key}={fields.get(key)} (best-val checkpoint: {fields.get(key + '_best')}), "
            f"params={record.data['params']:,}, record: {record.path}")
    if hydra_sweep_name() is None and is_global_zero():  # in a sweep, its progress line reports the result
        print(line, flush=True)
    log.info(line, extra=FILE_ONLY)
    return record.data
