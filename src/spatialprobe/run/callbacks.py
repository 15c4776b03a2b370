"""Lightning callbacks of our own (everything else comes from Lightning)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from spatialprobe.config.schema import KILL_MOMENTS
from spatialprobe.errors import UserError
from spatialprobe.run.files import atomic_file, os_error
from spatialprobe.run.streams import seed_global


class SeedSchedule(pl.Callback):
    """Derive all randomness from the run seed and the position in training (:mod:`spatialprobe.run.streams`).

    The global RNG (dropout, stochastic methods such as shuffles) is put on stream
    ``(seed, train_step, epoch, batch)`` before every training batch, and on an evaluation stream
    of the evaluation seed before every validation / test epoch. A run resumed from any checkpoint
    therefore draws exactly the numbers an uninterrupted run would, no two batches share a stream
    (also not the micro-batches of one optimizer step), and evaluation never reuses training's.
    """

    def __init__(self, seed: int, eval_seed: int):
        self.seed, self.eval_seed = int(seed), int(eval_seed)
        self.test_pass = 0  # the final test's pass (eval.test_passes): each pass its own stream

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        seed_global(self.seed, "train_step", trainer.current_epoch, batch_idx, int(trainer.num_training_batches))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        seed_global(self.eval_seed, "val", trainer.current_epoch)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        seed_global(self.eval_seed, "test", self.test_pass)


class RecordProgress(pl.Callback):
    """Writes the epochs done into the run's record (``progress``) after each epoch: a sweep's
    progress lines and ETA (spatialprobe.launch.progress) read it."""

    def __init__(self, record):
        self.record = record

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.record.write:
            self.record.update(progress={"epoch": int(trainer.current_epoch) + 1, "epochs": int(trainer.max_epochs)})


class Throughput(pl.Callback):
    """Training speed per epoch: ``train_images_per_s`` (images of the epoch's training batches over the
    wall time from its first batch to its last, data loading included, validation not), and ``train_mfu``
    (model FLOP utilisation: 3 x forward FLOPs per image x images/s over the device's peak) where the
    device's peak is known (a GPU of :mod:`spatialprobe.config.gpus`; a CPU has none). ``summary()`` gives
    the record's ``images_per_s`` / ``mfu``: the median over the epochs."""

    def __init__(self, forward_flops: int | None = None, precision: str = "32-true"):
        self.forward_flops, self.precision = forward_flops, str(precision)
        self.epochs: list[tuple[float, float | None]] = []
        self._start: float | None = None
        self._end: float | None = None
        self._images = 0
        self.peak: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        from spatialprobe.config.gpus import peak_tflops

        device = trainer.strategy.root_device
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            self.peak = peak_tflops(name, "fp32" if self.precision.startswith(("32", "64")) else "bf16")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images, self._end = None, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        labels = batch[1]
        self._images += len(labels) * trainer.world_size
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._start is None or self._end is None or self._end <= self._start:
            return
        rate = self._images / (self._end - self._start)
        mfu = 3 * self.forward_flops * rate / (self.peak * 1e12) if self.peak and self.forward_flops else None
        self.epochs.append((rate, mfu))
        values = {"train_images_per_s": rate}
        if mfu is not None:
            values["train_mfu"] = mfu
        pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=True)

    def summary(self) -> dict:
        import statistics

        if not self.epochs:
            return {"images_per_s": None, "mfu": None}
        rates = [r for r, _ in self.epochs]
        mfus = [m for _, m in self.epochs if m is not None]
        return {"images_per_s": round(statistics.median(rates), 2),
                "mfu": round(statistics.median(mfus), 4) if mfus else None}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written all or nothing and read without running code.

    * A checkpoint is written to a temporary file in the target directory, synced, then renamed: a crash
      at any moment leaves the previous checkpoint or the new one, never a torn file. The ``last.ckpt`` it
      replaces is kept as ``previous.ckpt``, so a ``last.ckpt`` damaged later (a copy between file systems
      that broke off) still leaves a checkpoint to resume from (:mod:`spatialprobe.run.checkpoints`).
    * A write that fails (disk full, quota, a file system gone read-only) raises
      :class:`CheckpointWriteError`, one line that names the file and says the previous checkpoint is intact.
    * ``on_saved(path, step)`` is told of every complete write (the run's record keeps the steps).
    * Loading (Lightning's resume, ``trainer.test(ckpt_path=...)``) uses ``torch.load(weights_only=True)``;
      a checkpoint already read and checked by the runner is handed over once without reading it again.
    """

    KEEP_PREVIOUS = {"last.ckpt": "previous.ckpt"}

    def __init__(self, on_saved=None, preloaded: tuple[Path, dict] | None = None):
        super().__init__()
        self.on_saved = on_saved
        self._preloaded = preloaded

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        try:
            with atomic_file(path, "wb", before_replace=self._keep_previous) as fh:
                torch.save(checkpoint, fh)
        except (OSError, RuntimeError) as err:
            cause = os_error(err)  # torch.save reports a failed write as a RuntimeError caused by the OSError
            if cause is None:
                raise
            raise CheckpointWriteError(path, cause) from err
        if self.on_saved is not None:
            self.on_saved(path, int(checkpoint.get("global_step") or 0))

    def _keep_previous(self, path: Path) -> None:
        """The checkpoint about to be replaced stays as previous.ckpt (a hard link: no copy, no gap)."""
        previous = self.KEEP_PREVIOUS.get(path.name)
        if previous is None or not path.is_file():
            return
        target = path.with_name(previous)
        tmp = path.with_name(f".{previous}.link")
        try:
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
            os.replace(tmp, target)
        except OSError:  # a file system without hard links: keep it by a rename (last.ckpt is absent a moment)
            tmp.unlink(missing_ok=True)
            os.replace(path, target)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        from spatialprobe.run.checkpoints import load

        if self._preloaded is not None and Path(path) == self._preloaded[0]:
            checkpoint, self._preloaded = self._preloaded[1], None
            return checkpoint
        return load(path)


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (disk full, quota, read-only); the previous one is intact."""

    def __init__(self, path: Path, err: OSError):
        self.path, self.errno = Path(path), err.errno
        code = errno.errorcode.get(err.errno or 0, "")
        why = f"{err.strerror or err}" + (f" ({code})" if code else "")
        kept = [p.name for p in (self.path, self.path.with_name("previous.ckpt")) if p.is_file()]
        intact = f"{', '.join(kept)} in {self.path.parent} intact" if kept else "no earlier checkpoint to keep"
        super().__init__(f"could not write {self.path}: {why}; {intact}; free space (or fix the file system) "
                         "and re-run the same command to resume")


class InterruptedBySignal(SystemExit):
    """The run was stopped by a signal after its last.ckpt was saved (exit status 128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}; last.ckpt saved, re-run to resume"


class SignalDeadline:
    """A watchdog for a run that was asked to stop: if, after SIGTERM / SIGUSR2, ``seconds`` pass
    without a batch ending (:meth:`beat`; a long validation still ends batches), ``on_expiry(signum)``
    runs (it writes the failed record) and the process ends with status 128 + signal.

    Python runs a signal handler only when the main thread returns to the interpreter, and a step that
    hangs inside a native kernel never does. So the watchdog learns of the signal through
    :func:`signal.set_wakeup_fd` (the C-level handler writes the signal number to a pipe) and waits in
    a thread of its own; it needs nothing from the main thread.
    """

    def __init__(self, seconds: float, signals, on_expiry):
        self.seconds, self.signals, self.on_expiry = float(seconds), {int(s) for s in signals}, on_expiry
        self._disarmed = threading.Event()
        self._beat = time.monotonic()
        self._read_fd = self._write_fd = None
        self._previous_fd = -1

    def start(self) -> None:
        """Call from the main thread, after the signals' Python handlers are installed."""
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="spatialprobe-signal-deadline", daemon=True).start()

    def disarm(self) -> None:
        """The run reached a batch boundary and is stopping the ordinary way."""
        self._disarmed.set()

    def stop(self) -> None:
        self._disarmed.set()
        if self._write_fd is not None and threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._previous_fd)
            os.close(self._write_fd)  # the watcher's read returns b"" and the thread ends
            self._write_fd = None

    def _watch(self) -> None:
        with os.fdopen(self._read_fd, "rb", buffering=0) as pipe:
            while True:
                data = pipe.read(64)
                if not data:
                    return
                if self._previous_fd >= 0:  # someone else's wakeup fd: pass the bytes on
                    with contextlib.suppress(OSError):
                        os.write(self._previous_fd, data)
                hits = [b for b in data if b in self.signals]
                if hits and not self._disarmed.is_set():
                    self._beat = time.monotonic()
                    while not self._disarmed.wait(max(0.0, self._beat + self.seconds - time.monotonic())):
                        if time.monotonic() - self._beat >= self.seconds:
                            self._expire(hits[0])  # ends the process
                            return
                    return

    def beat(self) -> None:
        """The main thread made progress (a batch ended): the deadline counts from now."""
        self._beat = time.monotonic()

    def _expire(self, signum: int) -> None:
        try:
            self.on_expiry(signum)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)


class ResumableCheckpoint(pl.Callback):
    """Keep ``last.ckpt`` fresh between epochs: every ``every_n_steps`` steps, every
    ``every_minutes`` minutes, and at the next batch boundary after SIGUSR2 / SIGTERM (preemption
    or a SLURM time limit). After a signal-triggered save the signal is handed to whoever handled
    it before (submitit requeues the job; by default the process ends).

    If no batch boundary comes within ``deadline_s`` seconds of the signal (a step that hangs), the
    :class:`SignalDeadline` watchdog calls ``on_stuck(reason)`` and ends the process, so that
    ``timeout`` and SLURM's grace period still stop the run."""

    SIGNALS = (signal.SIGUSR2, signal.SIGTERM)

    def __init__(self, path: Path, every_n_steps: int | None = None, every_minutes: float | None = None,
                 on_signal: bool = True, deadline_s: float | None = 60.0, on_stuck=None, on_resume=None):
        self.path = Path(path)
        self.on_resume = on_resume  # called with {"step", "epoch", "saved_for"} of the checkpoint a fit resumes from
        self.every_n_steps, self.every_minutes, self.on_signal = every_n_steps, every_minutes, on_signal
        self.deadline_s, self.on_stuck = deadline_s, on_stuck
        self._previous: dict[int, object] = {}
        self._pending: int | None = None
        self._in_fit = False
        self._saving_for: str | None = None
        self._last_reason: str | None = None
        self._last_save = time.monotonic()
        self._deadline: SignalDeadline | None = None
        self._last_step = 0
        self.restored_metrics: dict[str, float] = {}  # callback_metrics of the checkpoint a fit resumed from

    # -- signals
    def _handler(self, signum, frame) -> None:
        if self._in_fit:
            self._pending = signum  # acted on at the next batch boundary
        else:
            self._hand_over(signum, frame)

    def _install(self) -> None:
        if not self.on_signal or threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)
        if self.deadline_s:
            self._deadline = SignalDeadline(self.deadline_s, self.SIGNALS, self._stuck)
            self._deadline.start()

    def _stuck(self, signum: int) -> None:
        name = signal.Signals(signum).name
        reason = (f"stopped by {name}: no batch ended within {self.deadline_s:g} s of the signal (a step hung) after "
                  f"training step {self._last_step}; re-run to resume from the last checkpoint")
        print(f"spatialprobe: error: {reason}", file=sys.stderr, flush=True)
        if self.on_stuck is not None:
            self.on_stuck(reason)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        if self._deadline is not None:
            self._deadline.stop()
            self._deadline = None

    def _hand_over(self, signum: int, frame=None) -> None:
        if self._deadline is not None:
            self._deadline.disarm()
        previous = self._previous.get(signum, signal.SIG_DFL)
        self._restore()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # end the run the way the signal would, but through Python
            raise InterruptedBySignal(signum)

    # -- hooks
    def on_fit_start(self, trainer, pl_module) -> None:
        self._in_fit = True
        self._install()

    def _beat(self) -> None:
        if self._deadline is not None:
            self._deadline.beat()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._beat()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._beat()
        self._last_step = int(trainer.global_step)
        due = self.every_n_steps and trainer.global_step % int(self.every_n_steps) == 0
        due = due or (self.every_minutes and time.monotonic() - self._last_save >= 60 * float(self.every_minutes))
        if due or self._pending is not None:
            self._save(trainer)
            if self._last_reason == "schedule" and self._pending is not None:
                self._save(trainer)  # the signal came during the scheduled save: the checkpoint is the signal's
        if self._pending is not None:
            signum, self._pending = self._pending, None
            self._in_fit = False
            self._hand_over(signum)

    def _save(self, trainer) -> None:
        """last.ckpt, marked with why it was written (the pending signal's name, or ``schedule``)."""
        self._saving_for = signal.Signals(self._pending).name if self._pending is not None else "schedule"
        try:
            trainer.save_checkpoint(self.path)
        finally:
            self._last_reason, self._saving_for = self._saving_for, None
        self._last_save = time.monotonic()
    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # a fit resuming from a checkpoint (not a test loading best.ckpt): say which one, and why it was written
        if getattr(trainer.state, "fn", None) != "fit":
            return
        self.restored_metrics = dict(checkpoint.get("callback_metrics") or {})
        if self.on_resume is not None:
            self.on_resume({"step": int(checkpoint.get("global_step", 0)), "epoch": int(checkpoint.get("epoch", 0)),
                            "saved_for": checkpoint.get("saved_for")})

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # why this checkpoint was written: a signal's name, "schedule" (every_n_steps / every_minutes),
        # or None (Lightning's own epoch-end and best checkpoints)
        checkpoint["saved_for"] = self._saving_for
        # the epoch-level metrics so far (train_loss_epoch, val_*): a run resumed from the final checkpoint (killed
        # in its final test) trains nothing, and records the values the finished training had
        checkpoint["callback_metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()
                                          if getattr(v, "numel", lambda: 1)() == 1}

    def on_fit_end(self, trainer, pl_module) -> None:
        self._in_fit = False
        pending, self._pending = self._pending, None
        if pending is not None:  # arrived after the last training batch: last.ckpt is already final
            self._hand_over(pending)
        else:
            self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._in_fit = False
        self._restore()


class InjectedFault(RuntimeError):
    """A failure caused on purpose by a ``debug.*`` option (tests of resume and of sweeps)."""


class DebugFaults(pl.Callback):
    """Faults injected on purpose, each at most once per run directory (a marker file remembers):
    ``kill_at_step``: the process SIGKILLs itself right after that training step;
    ``kill_during``: the process SIGKILLs itself at a moment of the run other than a training step:
    ``validation`` (after the first batch of the first validation, the sanity check aside), ``epoch_end``
    (at the end of the first training epoch, its validation done, before the epoch-end checkpoint is
    written: Lightning runs the checkpoint callbacks last), ``epoch_start`` (at the start of the second
    epoch, before its first batch) or ``test`` (after the first batch of the final test);
    ``crash_at_epoch``: an exception at the end of that epoch (a job that fails once);
    ``hang_at_step``: the training step after that one never returns (a kernel that hangs)."""

    MOMENTS = KILL_MOMENTS

    def __init__(self, run_dir: Path, kill_at_step: int | None = None, crash_at_epoch: int | None = None,
                 hang_at_step: int | None = None, kill_during: str | None = None):
        self.run_dir, self.kill_at_step, self.crash_at_epoch = Path(run_dir), kill_at_step, crash_at_epoch
        self.hang_at_step, self.kill_during = hang_at_step, kill_during

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.hang_at_step is not None and trainer.global_step == int(self.hang_at_step) and self._first_time("hang"):
            while True:  # signal handlers still run in between; the step itself never ends
                time.sleep(3600)

    def _first_time(self, name: str) -> bool:
        marker = self.run_dir / f".debug-{name}"
        if marker.exists():
            return False
        marker.write_text("injected once\n")
        return True

    def _kill_during(self, moment: str) -> None:
        if self.kill_during == moment and self._first_time(f"kill-{moment}"):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.kill_at_step is not None and trainer.global_step == int(self.kill_at_step) and self._first_time("kill"):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._kill_during("validation")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._kill_during("test")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            self._kill_during("epoch_start")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._kill_during("epoch_end")
        if (self.crash_at_epoch is not None and trainer.current_epoch == int(self.crash_at_epoch)
                and self._first_time("crash")):
            raise InjectedFault(f"debug.crash_at_epoch={self.crash_at_epoch}: injected failure")
