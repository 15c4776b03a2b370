"""Lightning callbacks of our own (everything else comes from Lightning)."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from .streams import seed_global


class SeedSchedule(pl.Callback):
    """Derive all randomness from the run seed and the position in training (:mod:`spatialprobe.streams`).

    The global RNG (dropout, stochastic methods such as shuffles) is put on stream
    ``(seed, train_step, epoch, batch)`` before every training batch, and on an evaluation stream
    of the evaluation seed before every validation / test epoch. A run resumed from any checkpoint
    therefore draws exactly the numbers an uninterrupted run would, no two batches share a stream
    (also not the micro-batches of one optimizer step), and evaluation never reuses training's.
    """

    def __init__(self, seed: int, eval_seed: int):
        self.seed, self.eval_seed = int(seed), int(eval_seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        seed_global(self.seed, "train_step", trainer.current_epoch, batch_idx, int(trainer.num_training_batches))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        seed_global(self.eval_seed, "val", trainer.current_epoch)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        seed_global(self.eval_seed, "test")


class RecordProgress(pl.Callback):
    """Writes the epochs done into the run's record (``progress``) after each epoch: a sweep's
    progress lines and ETA (spatialprobe.progress) read it."""

    def __init__(self, record):
        self.record = record

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.record.write:
            self.record.update(progress={"epoch": int(trainer.current_epoch) + 1, "epochs": int(trainer.max_epochs)})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file in the target directory, synced, then renamed:
    a crash at any moment leaves the previous checkpoint or the new one, never a torn file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class InterruptedBySignal(SystemExit):
    """The run was stopped by a signal after its last.ckpt was saved (exit status 128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}; last.ckpt saved, re-run to resume"


class ResumableCheckpoint(pl.Callback):
    """Keep ``last.ckpt`` fresh between epochs: every ``every_n_steps`` steps, every
    ``every_minutes`` minutes, and at the next batch boundary after SIGUSR2 / SIGTERM (preemption
    or a SLURM time limit). After a signal-triggered save the signal is handed to whoever handled
    it before (submitit requeues the job; by default the process ends)."""

    SIGNALS = (signal.SIGUSR2, signal.SIGTERM)

    def __init__(self, path: Path, every_n_steps: int | None = None, every_minutes: float | None = None,
                 on_signal: bool = True):
        self.path = Path(path)
        self.every_n_steps, self.every_minutes, self.on_signal = every_n_steps, every_minutes, on_signal
        self._previous: dict[int, object] = {}
        self._pending: int | None = None
        self._in_fit = False
        self._saving_for: str | None = None
        self._last_save = time.monotonic()

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

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _hand_over(self, signum: int, frame=None) -> None:
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

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = self.every_n_steps and trainer.global_step % int(self.every_n_steps) == 0
        due = due or (self.every_minutes and time.monotonic() - self._last_save >= 60 * float(self.every_minutes))
        if due or self._pending is not None:
            self._saving_for = signal.Signals(self._pending).name if self._pending is not None else "schedule"
            try:
                trainer.save_checkpoint(self.path)
            finally:
                self._saving_for = None
            self._last_save = time.monotonic()
        if self._pending is not None:
            signum, self._pending = self._pending, None
            self._in_fit = False
            self._hand_over(signum)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # why this checkpoint was written: a signal's name, "schedule" (every_n_steps / every_minutes),
        # or None (Lightning's own epoch-end and best checkpoints)
        checkpoint["saved_for"] = self._saving_for

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
    ``crash_at_epoch``: an exception at the end of that epoch (a job that fails once)."""

    def __init__(self, run_dir: Path, kill_at_step: int | None = None, crash_at_epoch: int | None = None):
        self.run_dir, self.kill_at_step, self.crash_at_epoch = Path(run_dir), kill_at_step, crash_at_epoch

    def _first_time(self, name: str) -> bool:
        marker = self.run_dir / f".debug-{name}"
        if marker.exists():
            return False
        marker.write_text("injected once\n")
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.kill_at_step is not None and trainer.global_step == int(self.kill_at_step) and self._first_time("kill"):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (self.crash_at_epoch is not None and trainer.current_epoch == int(self.crash_at_epoch)
                and self._first_time("crash")):
            raise InjectedFault(f"debug.crash_at_epoch={self.crash_at_epoch}: injected failure")
