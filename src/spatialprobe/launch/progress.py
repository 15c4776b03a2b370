"""A sweep's progress on the console: one line per job as it starts and as it ends, and the sweep's ETA.

    [1/5] none k=0: started
    sweep: about 4m50s left (from the first epochs)
    [1/5] none k=0: 70.3% in 1m49s; 1 of 5 done, about 3m40s left

Everything is read from the jobs' records (``result.json``: status, ``progress`` = epochs done of
epochs planned, ``test_top1``, ``wall_time_s``), polled by a thread of the process that launched
the sweep, so it works the same with every launcher (in this process, local subprocesses, SLURM).
The ETA: the epochs left (and the start-up of the jobs still waiting) at the seconds per epoch and
the start-up time measured on the jobs so far, shared by as many jobs at a time as have run at
once (see :meth:`SweepProgress.eta`).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from spatialprobe.run.records import RECORD_NAME, read_json


def duration(seconds: float) -> str:
    """``45s``, ``1m52s``, ``2h05m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def percent(value) -> str:
    return f"{float(value):.1f}%" if isinstance(value, int | float) else "no accuracy"


@dataclass
class Watched:
    label: str
    run_dir: Path
    epochs: int  # planned
    status: str | None = None
    attempts: int = 0
    done: int = 0
    ended: bool = False
    t_start: float | None = None  # when it was seen starting
    t_first: float | None = None  # when its first epoch was seen, and the epochs done then
    e_first: int = 0
    t_last: float | None = None  # when its latest epoch was seen

    def epoch_s(self) -> float | None:
        """Seconds per epoch, between the epochs seen (its start-up left out)."""
        if self.t_first is None or self.t_last is None or self.done <= self.e_first:
            return None
        return (self.t_last - self.t_first) / (self.done - self.e_first)

    def startup_s(self) -> float | None:
        """Seconds from its start to its first epoch, less that epoch's time."""
        per = self.epoch_s()
        if per is None or self.t_start is None:
            return None
        return max(0.0, self.t_first - self.t_start - self.e_first * per)


class SweepProgress:
    """Polls the records of a sweep's jobs and prints a line per start and end (see the module doc)."""

    def __init__(self, jobs: list[tuple[str, Path, int]], interval: float = 2.0, out: TextIO | None = None):
        self.jobs = [Watched(label, Path(run_dir), max(1, int(epochs))) for label, run_dir, epochs in jobs]
        self.interval, self.out = interval, out or sys.stdout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._first_eta_shown = False
        self._slots = 1  # the most jobs seen running at once

    # -- reading the records
    def _read(self, job: Watched) -> dict:
        return read_json(job.run_dir / RECORD_NAME) or {}

    def _epochs_done(self, job: Watched, rec: dict) -> int:
        if rec.get("status") == "complete":
            return job.epochs
        return int((rec.get("progress") or {}).get("epoch") or 0)

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _tag(self, job: Watched) -> str:
        return f"[{self.jobs.index(job) + 1}/{len(self.jobs)}] {job.label}"

    # -- the ETA
    def eta(self) -> float | None:
        """Seconds left for the sweep, or None while no job has finished two epochs.

        Each job's seconds per epoch are measured between the epochs seen (its start-up apart),
        its start-up as the time before its first epoch; the work left (the running jobs' epochs,
        the waiting jobs' start-up and epochs, at the mean of those measured) is shared by as
        many jobs at a time as have run at once.
        """
        per = [p for p in (j.epoch_s() for j in self.jobs) if p is not None]
        if not per:
            return None
        startups = [s for s in (j.startup_s() for j in self.jobs) if s is not None]
        epoch_s, startup_s = sum(per) / len(per), (sum(startups) / len(startups) if startups else 0.0)
        left = [j for j in self.jobs if not j.ended]
        work = sum((j.epochs - j.done) * epoch_s + (startup_s if j.status != "running" else 0.0) for j in left)
        return work / max(1, min(self._slots, len(left)))

    def _left(self) -> str:
        eta = self.eta()
        return "" if eta is None else f"about {duration(eta)} left"

    # -- polling
    def start(self) -> None:
        for job in self.jobs:
            rec = self._read(job)
            job.status, job.attempts = rec.get("status"), int(rec.get("attempts") or 0)
            job.done = self._epochs_done(job, rec)
            if job.status == "complete":
                job.ended = True
                self._say(f"{self._tag(job)}: skipped, already complete ({percent(rec.get('test_top1'))})")
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        now = time.monotonic()
        for job in self.jobs:
            if job.ended:
                continue
            rec = self._read(job)
            status, attempts = rec.get("status"), int(rec.get("attempts") or 0)
            done = self._epochs_done(job, rec)
            if status == "running" and (job.status != "running" or attempts != job.attempts):
                job.t_start, job.t_first, job.t_last, job.done = now, None, None, done  # a new attempt
                again = f" (attempt {attempts})" if attempts > 1 else ""
                self._say(f"{self._tag(job)}: started{again}")
            elif status == "running" and done > job.done:
                if job.t_first is None:
                    job.t_first, job.e_first = now, done
                job.t_last, job.done = now, done
            elif status in ("complete", "failed") and (status != job.status or attempts != job.attempts):
                job.ended, job.done = True, max(job.done, done)
                took = duration(float(rec.get("wall_time_s") or 0))
                if status == "complete":
                    what = f"{percent(rec.get('test_top1'))} in {took}"
                else:
                    what = f"failed after {took}: {rec.get('reason')}"
                ended = sum(j.ended for j in self.jobs)
                left = self._left() if ended < len(self.jobs) else ""
                self._say(f"{self._tag(job)}: {what}; {ended} of {len(self.jobs)} ended" + (f", {left}" if left else ""))
            job.status, job.attempts = status, attempts
        self._slots = max(self._slots, sum(j.status == "running" and not j.ended for j in self.jobs))
        if not self._first_eta_shown and self.eta() is not None and not all(j.ended for j in self.jobs):
            self._first_eta_shown = True
            self._say(f"sweep: {self._left()} (from the first epochs)")
