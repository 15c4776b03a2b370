"""A sweep's progress on the console: one line per job as it starts and as it ends, and the sweep's ETA.

    [1/5] none k=0: started
    sweep: about 4m50s left (from the first epochs)
    [1/5] none k=0: 70.3% in 1m49s; 1 of 5 done, about 3m40s left

Everything is read from the jobs' records (``result.json``: status, ``progress`` = epochs done of
epochs planned, ``test_top1``, ``wall_time_s``), polled by a thread of the process that launched
the sweep, so it works the same with every launcher (in this process, local subprocesses, SLURM).
The ETA is the sweep's remaining epochs at the rate the sweep has trained epochs since its first
finished epoch (all jobs together, later jobs' start-up included): whatever the number of jobs
running side by side, this rate is what the machine delivers.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .records import RECORD_NAME, read_json


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
    done_at_start: int = 0
    done: int = 0
    ended: bool = False


class SweepProgress:
    """Polls the records of a sweep's jobs and prints a line per start and end (see the module doc)."""

    def __init__(self, jobs: list[tuple[str, Path, int]], interval: float = 2.0, out: TextIO | None = None):
        self.jobs = [Watched(label, Path(run_dir), max(1, int(epochs))) for label, run_dir, epochs in jobs]
        self.interval, self.out = interval, out or sys.stdout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._first_eta_shown = False
        self._first: tuple[float, int] | None = None  # (time, epochs trained) when the first epoch was seen

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
    def _trained(self) -> int:
        return sum(j.done - j.done_at_start for j in self.jobs)

    def eta(self) -> float | None:
        """Seconds left for the sweep, or None until the rate is known.

        The rate is counted from the first finished epoch on (the first start-up left out) and only
        once every running job has finished another epoch since: until then it would be a guess.
        """
        if self._first is None:
            return None
        t_first, n_first = self._first
        trained = self._trained() - n_first
        running = sum(j.status == "running" and not j.ended for j in self.jobs)
        if trained < max(1, running):
            return None
        left = sum(j.epochs - j.done for j in self.jobs if not j.ended)
        return left * (time.monotonic() - t_first) / trained

    def _left(self) -> str:
        eta = self.eta()
        return "" if eta is None else f"about {duration(eta)} left"

    # -- polling
    def start(self) -> None:
        for job in self.jobs:
            rec = self._read(job)
            job.status, job.attempts = rec.get("status"), int(rec.get("attempts") or 0)
            job.done = job.done_at_start = self._epochs_done(job, rec)
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
        for job in self.jobs:
            if job.ended:
                continue
            rec = self._read(job)
            status, attempts = rec.get("status"), int(rec.get("attempts") or 0)
            job.done = max(job.done, self._epochs_done(job, rec))
            if status == "running" and (job.status != "running" or attempts != job.attempts):
                again = f" (attempt {attempts})" if attempts > 1 else ""
                self._say(f"{self._tag(job)}: started{again}")
            elif status in ("complete", "failed") and (status != job.status or attempts != job.attempts):
                job.ended = True
                took = duration(float(rec.get("wall_time_s") or 0))
                if status == "complete":
                    what = f"{percent(rec.get('test_top1'))} in {took}"
                else:
                    what = f"failed after {took}: {rec.get('reason')}"
                ended = sum(j.ended for j in self.jobs)
                left = self._left()
                self._say(f"{self._tag(job)}: {what}; {ended} of {len(self.jobs)} ended" + (f", {left}" if left
                                                                                            and ended < len(self.jobs) else ""))
            job.status, job.attempts = status, attempts
        if self._first is None and self._trained() > 0:
            self._first = (time.monotonic(), self._trained())
        if not self._first_eta_shown and self.eta() is not None and not all(j.ended for j in self.jobs):
            self._first_eta_shown = True
            self._say(f"sweep: {self._left()} (from the first epochs)")
