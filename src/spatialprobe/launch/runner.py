"""Run one configuration: train, test, and write its result record (the library behind ``spatialprobe.train``).

The runner asks the configuration's task (:mod:`spatialprobe.tasks`) for everything task-specific: the
network built on the modified registry network, the Lightning module, the metric that picks the best
checkpoint (``task.monitor``), extra callbacks and record fields. Every metric the task logs in its test
epoch is recorded as it is (final network) and with ``_best`` (the best-validation checkpoint).
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import spatialprobe
from spatialprobe.config.schema import recipe_note, validate_train
from spatialprobe.errors import UserError
from spatialprobe.run.files import os_error
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


#: errors of a file system that refuses a write: disk full, quota, read-only, permission, file too large
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train and test one configuration; return its (complete) result record.

    The run directory belongs to this process while it works (``run.lock``, :mod:`spatialprobe.run.lock`): a
    live holder elsewhere is one line (:class:`~spatialprobe.run.lock.RunInUse`) and nothing is trained."""
    validate(cfg)  # before torch is imported: a bad value is answered at once
    note = recipe_note(cfg)
    if note:
        log.warning(note)
    from spatialprobe.run.speed import check_devices, is_global_zero

    check_devices(cfg)  # GPU present, bf16 support, devices vs SLURM tasks: before anything is written
    run_dir = Path(run_dir or hydra_output_dir() or Path(cfg.paths.run_root) / cfg.name)
    ensure_writable(run_dir)
    lock = None
    if is_global_zero():  # DDP: the first process holds the lock for all of them
        from spatialprobe.run.lock import HEARTBEAT_S, STALE_AFTER_S, RunLock

        lock = RunLock(run_dir, OmegaConf.select(cfg, "lock.heartbeat_s", default=HEARTBEAT_S),
                       OmegaConf.select(cfg, "lock.stale_after_s", default=STALE_AFTER_S))
        took_over = lock.acquire()
        if took_over:
            print(took_over, file=sys.stderr, flush=True)
    try:
        return _run_owned(cfg, run_dir, lock)
    finally:
        if lock is not None:
            lock.release()


def _run_owned(cfg: DictConfig, run_dir: Path, lock) -> dict:
    from spatialprobe.run.loggers import isolated_run
    from spatialprobe.run.speed import is_global_zero

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
    resume_from = None
    if cfg.resume and record.data.get("config_hash") == chash:
        resume_from = choose_checkpoint(cfg, run_dir, record, chash)
    steps = dict(record.data.get("checkpoint_steps") or {})

    record.start(
        resolved, chash,
        name=cfg.name, model=cfg.model.name, arch=cfg.model.arch, dataset=cfg.dataset.name,
        method=cfg.method.name, k=int(cfg.k), seed=int(cfg.seed), spatialprobe_version=spatialprobe.__version__,
        **git_state(REPO), resumed_from=None,
    )
    if resume_from is not None and resume_from.path is not None:
        steps = {name: step for name, step in steps.items() if (run_dir / "checkpoints" / name).is_file()}
        record.update(checkpoint_steps=steps, resumed_from={"file": resume_from.path.name, "step": resume_from.step,
                                                            "steps_lost": resume_from.steps_lost})
    try:
        with isolated_run():  # nothing this run's loggers do reaches the next run of the process
            result = _train(cfg, run_dir, resolved, record, resume_from, lock)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            reason = "interrupted (KeyboardInterrupt); re-run to resume"
        elif isinstance(err, SystemExit):
            reason = str(err) if str(err) and not str(err).lstrip("-").isdigit() else f"interrupted (exit {err.code})"
        else:
            reason = f"{type(err).__name__}: {err}"
        refused = os_error(err) if isinstance(err, Exception) and not isinstance(err, UserError) else None
        if refused is not None and refused.errno in WRITE_ERRNOS:  # a full disk is the user's to fix: one line
            err = UserError(write_failure(run_dir, refused))
            reason = str(err)
        written = _fail(record, " ".join(reason.split()))
        if not written and isinstance(err, UserError):
            err = UserError(f"{err}; the record {record.path} could not be updated either")
        if err is not sys.exc_info()[1]:
            raise err from None
        raise
    return result


def write_failure(run_dir: Path, err: OSError) -> str:
    """The one line of a write the file system refused (disk full, read-only, ...) during a run."""
    code = errno.errorcode.get(err.errno or 0, "")
    where = err.filename or run_dir
    return (f"could not write {where}: {err.strerror or err}" + (f" ({code})" if code else "") +
            f"; the checkpoints already in {run_dir / 'checkpoints'} are intact; free space (or fix the file "
            "system) and re-run the same command to resume")


def _fail(record: RunRecord, reason: str) -> bool:
    """Mark the record failed; False if it could not be written (the disk that failed the run, full)."""
    try:
        record.fail(reason)
    except OSError:
        return False
    return True


def choose_checkpoint(cfg: DictConfig, run_dir: Path, record: RunRecord, chash: str):
    """The checkpoint an unfinished run resumes from (:func:`spatialprobe.run.checkpoints.resume_point`), with
    one line when it is not last.ckpt; None when there is none. When checkpoints exist but none loads:
    one line and a failed record, or, with ``checkpoint.on_unreadable=restart``, from step 0 (one line too)."""
    from spatialprobe.run.checkpoints import UnsafeFile, resume_point, set_aside
    from spatialprobe.run.speed import is_global_zero

    ckpt_dir = run_dir / "checkpoints"
    steps = record.data.get("checkpoint_steps") or {}
    try:
        point = resume_point(ckpt_dir, lambda ckpt: config_hash(ckpt.get("spatialprobe_config") or {}) == chash,
                             max(steps.values()) if steps else None)
    except UnsafeFile as err:
        _fail(record, str(err))
        raise
    first = is_global_zero()
    if point.path is not None:
        if point.unreadable and first:
            print(point.note(run_dir), file=sys.stderr, flush=True)
            set_aside(ckpt_dir, [n for n, why in point.unreadable.items() if why.startswith("unreadable")])
        return point
    if not point.unreadable:
        return None  # stopped before its first checkpoint: nothing to resume, nothing lost
    found = "; ".join(f"{name}: {why}" for name, why in point.unreadable.items())
    if OmegaConf.select(cfg, "checkpoint.on_unreadable", default="fail") != "restart":
        reason = (f"{ckpt_dir}: no checkpoint of this unfinished run loads ({found}); nothing was trained. To train "
                  "it again from step 0, re-run with checkpoint.on_unreadable=restart")
        if first:
            _fail(record, reason)
        raise UserError(reason)
    if first:
        kept = set_aside(ckpt_dir, point.unreadable)
        print(f"spatialprobe: warning: {ckpt_dir}: no checkpoint loads ({found}); training again from step 0 as "
              f"checkpoint.on_unreadable=restart asks (kept: {', '.join(p.name for p in kept)})",
              file=sys.stderr, flush=True)
    return None


def metric_fields(final: list[dict], best: list[dict]) -> dict:
    """Every metric of the test epoch as the record holds it, from the passes over the test set (one unless a
    random op is active at test time): ``<metric>`` is the mean over the final network's passes,
    ``<metric>_std`` their standard deviation, ``<metric>_best`` the mean of the best-validation checkpoint's;
    ``test_top1_final`` / ``test_top5_final`` / ``test_loss_final`` name the final values of the
    classification metrics too, and ``test_passes`` the number of passes."""
    import statistics

    fields: dict = {"test_passes": len(final)}
    for key in final[0]:
        values = [r[key] for r in final]
        fields[key] = rounded(statistics.fmean(values))
        fields[f"{key}_std"] = rounded(statistics.stdev(values)) if len(values) > 1 else 0.0
        fields[f"{key}_best"] = rounded(statistics.fmean(r[key] for r in best)) if key in best[0] else None
    for key in ("test_top1", "test_top5", "test_loss"):
        if key in final[0]:
            fields[f"{key}_final"] = fields[key]
    return fields


def run_test_passes(trainer, module, dm, seeds, passes: int, ckpt_path: str | None = None) -> list[dict]:
    """``passes`` test epochs, each on its own evaluation stream (pass 0: the stream of a single test)."""
    results = []
    for p in range(passes):
        seeds.test_pass = p
        results.append({k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False,
                                                             ckpt_path=ckpt_path if p == 0 else None)[0].items()})
    seeds.test_pass = 0
    return results


def stochastic_at_test(model) -> bool:
    """Whether a random op of the network (a shuffle) is active at test time."""
    from spatialprobe.methods.base import StochasticOp

    return any(isinstance(m, StochasticOp) and m.active_test for m in model.modules())


def _train(cfg: DictConfig, run_dir: Path, resolved: dict, record: RunRecord, resume_from, lock) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import (
        LearningRateMonitor,
        ModelCheckpoint,
        ModelSummary,
        TQDMProgressBar,
    )
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from spatialprobe import surgery, tasks
    from spatialprobe.data import build_datamodule
    from spatialprobe.models import build_model
    from spatialprobe.run.callbacks import (
        AtomicCheckpointIO,
        RecordProgress,
        ResumableCheckpoint,
        SeedSchedule,
        Throughput,
    )
    from spatialprobe.run.loggers import build_loggers, dashboard_keys, finish_loggers
    from spatialprobe.run.measure import count_flops, count_params, feature_maps, receptive_field
    from spatialprobe.run.speed import apply as apply_speed_options
    from spatialprobe.run.speed import is_global_zero, use_the_jobs_cpus
    from spatialprobe.run.streams import seed_global

    t0 = time.time()
    use_the_jobs_cpus()  # a SLURM job's CPUs, not every core of its node
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
                                    on_resume=lambda resumed: record.update(
                                        resumed_from={**(record.data.get("resumed_from") or {}), **resumed}))
    seeds = SeedSchedule(int(cfg.seed), int(eval_seed))
    speed = Throughput(record.data.get("flops"), str(cfg.trainer.precision))
    # Lightning's plain summary and progress bar, whatever else is installed (with `rich` present it would pick
    # rich's, which print past the logging and so past the quiet console and the run's log file)
    shown = [ModelSummary()] + ([TQDMProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else [])
    callbacks = [*shown, checkpoint, last, resumable, seeds, speed, LearningRateMonitor("epoch"),
                 RecordProgress(record), *debug_faults(cfg, run_dir), *task.callbacks(cfg, int(eval_seed))]
    if lock is not None:
        from spatialprobe.run.lock import lock_guard

        callbacks.append(lock_guard(lock))  # stops at the next batch if another process took the run over
    steps = dict(record.data.get("checkpoint_steps") or {})

    def saved(path: Path, step: int) -> None:  # the step of every checkpoint file, for the steps a fallback loses
        if path.name == "last.ckpt" and "last.ckpt" in steps:
            steps["previous.ckpt"] = steps["last.ckpt"]
        steps[path.name] = step
        if record.write:
            record.update(checkpoint_steps=dict(steps))

    preloaded = (resume_from.path, resume_from.checkpoint) if resume_from is not None else None
    plugins = [AtomicCheckpointIO(on_saved=saved, preloaded=preloaded)]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))  # submitit, not Lightning, requeues the job
    trainer_args = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if v is not None}
    trainer = pl.Trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, plugins=plugins,
                         **trainer_args)

    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from.path) if resume_from is not None else None)
    # a fit resumed from the final checkpoint trains nothing: the metrics of the training it finished
    fit_metrics = {**resumable.restored_metrics, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
    if watched not in fit_metrics and trainer.limit_val_batches:
        fit_metrics.update({k: float(v) for k, v in trainer.validate(module, datamodule=dm, verbose=False)[0].items()})
    # a random op active at test time (a shuffle): eval.test_passes passes, mean and spread; else one
    passes = int(cfg.eval.test_passes) if stochastic_at_test(model) else 1
    seed_global(int(eval_seed), "final_test")
    final = run_test_passes(trainer, module, dm, seeds, passes)
    best_path = checkpoint.best_model_path
    best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    best = final
    if cfg.eval.test_best and best_path and Path(best_path).is_file() and best_score != fit_metrics.get(watched):
        best = run_test_passes(trainer, module, dm, seeds, passes, ckpt_path=best_path)
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
        **speed.summary(),  # images_per_s (training, median over the epochs), mfu where the device's peak is known
        "checkpoints": {"last": str(last_path) if last_path.is_file() else None, "best": best_path or None},
        "eval_seed": int(eval_seed),
    }
    if watched != "val_top1":  # val_top1 picks no checkpoint: it is recorded as measured
        fields.update(val_top1_final=rounded(fit_metrics.get("val_top1")), val_top1_best=None)
    # validating on the test split (dataset.val_size=0, as the papers do): the best test top-1 over the epochs,
    # which P's released script reports (P Table 1), next to the final network's test_top1
    val_is_test = not int(OmegaConf.select(cfg, "dataset.val_size", default=0) or 0)
    fields["test_top1_best_epoch"] = fields["val_top1_best"] if val_is_test and watched == "val_top1" else None
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
