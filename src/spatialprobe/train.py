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
from .config import hydra_entry
from .errors import UserError, one_line, reported
from .records import RunRecord, config_diff, config_hash, git_state
from .runtime import (
    check_output_overrides,
    ensure_writable,
    hydra_job_num,
    hydra_output_dir,
    hydra_sweep_name,
)
from .schema import recipe_note, validate_train

log = logging.getLogger("spatialprobe")
FILE_ONLY = {"console": False}  # a line printed to stdout is logged to the run's log file only (console.OwnLinesOnly)


def validate(cfg: DictConfig) -> None:
    """Every check that needs neither data nor a device (spatialprobe.schema); runs before anything is written."""
    validate_train(cfg)


def debug_faults(cfg: DictConfig, run_dir: Path) -> list:
    """The fault-injection callback, for the jobs ``debug.only_jobs`` selects (all by default)."""
    from .callbacks import DebugFaults

    only = cfg.debug.get("only_jobs")
    if only is not None and hydra_job_num() not in set(only):
        return []
    return [DebugFaults(run_dir, cfg.debug.kill_at_step, cfg.debug.crash_at_epoch, cfg.debug.get("hang_at_step"))]


def _metric(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else round(float(value), 4)


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train and test one configuration; return its (complete) result record."""
    validate(cfg)  # before torch is imported: a bad value is answered at once
    note = recipe_note(cfg)
    if note:
        print(note, file=sys.stderr, flush=True)
    from .loggers import isolated_run
    from .speed import check_devices, is_global_zero

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
    from .tasks import build_module, build_network, monitor, record_fields
    from .tasks import callbacks as task_callbacks

    t0 = time.time()
    dm = build_datamodule(cfg)  # reads (or decodes once and caches) the data; fails here if missing
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    size = int(cfg.dataset.image_size)
    model = build_model(cfg.model, int(cfg.dataset.num_classes), size)
    report = surgery.apply(model, cfg.method, int(cfg.k), size)  # after the build: same init for every K
    model = build_network(cfg, model)  # task=detect: the modified network becomes a detector's backbone
    record.update(
        params=count_params(model), flops=count_flops(model, size), units=len(model.unit_names()),
        modified_units=report.modified_units, stripped_units=report.stripped_units,
        modified_unit_names=report.unit_names, receptive_field=receptive_field(model, report.modified_units),
        feature_maps=feature_maps(model, size), data_sizes=dm.sizes(),
    )
    # channels_last / torch.compile, after params and FLOPs are counted; the batches follow the network's memory format
    dm.channels_last = apply_speed_options(model, cfg)
    record.update(channels_last=dm.channels_last)
    module = build_module(cfg, model, resolved, steps_per_epoch=dm.train_batches,  # Classifier, AugShift, ...
                          class_names=getattr(dm, "classes", None))

    eval_seed = cfg.eval.seed if cfg.eval.seed is not None else int(cfg.seed) + 1
    watched = monitor(cfg)  # val_top1; val_miou for segmentation, val_map50 for detection
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=watched, mode="max",
                                 save_top_k=1, enable_version_counter=False)
    # last.ckpt at every epoch end (Lightning's save_last=True writes it only when best.ckpt improves)
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    loggers = build_loggers(cfg, run_dir, {**resolved, **dashboard_keys(cfg, record.data)}, hydra_sweep_name(),
                            attempt=int(record.data["attempts"]))
    resumable = ResumableCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg.checkpoint.every_n_steps,
                                    cfg.checkpoint.every_minutes, bool(cfg.checkpoint.on_signal),
                                    deadline_s=cfg.checkpoint.signal_deadline_s, on_stuck=record.fail)
    callbacks = [checkpoint, last, resumable, SeedSchedule(int(cfg.seed), int(eval_seed)), LearningRateMonitor("epoch"),
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
    if watched not in fit_metrics and trainer.limit_val_batches:
        fit_metrics.update({k: float(v) for k, v in trainer.validate(module, datamodule=dm, verbose=False)[0].items()})
    seed_global(int(eval_seed), "final_test")
    final = trainer.test(module, datamodule=dm, verbose=False)[0]
    best_path = checkpoint.best_model_path
    best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    best = final
    if cfg.eval.test_best and best_path and Path(best_path).is_file() and best_score != fit_metrics.get(watched):
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
    if watched != "val_top1":  # the best checkpoint was chosen by another metric (segmentation: val_miou)
        fields.update({f"{watched}_final": _metric(fit_metrics, watched), "val_top1_best": None,
                       f"{watched}_best": round(best_score, 4) if best_score is not None else _metric(fit_metrics, watched)})
    fields.update(record_fields(cfg, final, best, module=module))  # task, test_cons{S}
    fields["val_top1"] = fields["val_top1_final"]
    fields["test_top1"] = fields["test_top1_final"]
    if not record.write:  # DDP ranks > 0: rank 0 finishes the loggers, writes the record and reports
        return record.data
    fields.update(finish_loggers(loggers, summary={**fields, "params": record.data["params"],
                                                   "flops": record.data["flops"], "k": int(cfg.k),
                                                   "method": cfg.method.name}))  # + wandb_* fields
    record.complete(**fields)
    key = "map50" if "map50" in fields else "test_top1"
    line = (f"{cfg.name}: {key}={fields[key]} (best-val checkpoint: {fields[key + '_best']}), "
            f"params={record.data['params']:,}, record: {record.path}")
    from .speed import is_global_zero

    if hydra_sweep_name() is None and is_global_zero():  # in a sweep, its progress line reports the result
        print(line, flush=True)
    log.info(line, extra=FILE_ONLY)
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
    hydra_entry(_hydra_main, check_output_overrides, config_name="train", validate=validate)


if __name__ == "__main__":
    main()
