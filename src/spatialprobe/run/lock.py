"""One live owner per run directory: ``<run dir>/run.lock``.

A run directory is trained by one process at a time. The process that trains it holds ``run.lock``, a small
JSON file naming its host, pid, SLURM job (``<array job>_<task>`` for an array task) and a heartbeat it
renews every ``lock.heartbeat_s`` seconds from a thread of its own. A second launch on a live run says so
in one line (:class:`RunInUse`, exit status 2) and trains nothing; in a sweep that job is listed as running
elsewhere and the sweep goes on. A SLURM launcher that submits a run writes a ``queued`` lock naming the
array task before it starts, so that the same sweep command, run again while the array waits or runs,
reports it instead of submitting it a second time.

The holder is gone, and its lock is taken over with one warning line, when any of these holds:

* it is an earlier start of the SLURM job that now runs (a requeue after the node died);
* it ran on this host and its process has ended (pid gone, a zombie, or the pid now another process);
* its heartbeat is older than ``lock.stale_after_s`` (a training holder only: a queued one has none);
* its SLURM job is no longer pending or running (``squeue``; without ``squeue`` this test is skipped).

Creating the lock is atomic on local and network file systems (a hard link of a complete file, which fails
if the lock exists); taking one over, and renewing the heartbeat, happen under a short mutex (a directory,
``run.lock.d``, whose creation is atomic too), so two processes never both take over the same stale lock.
A holder that finds its lock taken over (it was stopped, e.g. suspended, for longer than the limit) stops at
the next batch (:class:`LockGuard`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from spatialprobe.errors import UserError

LOCK_NAME = "run.lock"
MUTEX_NAME = "run.lock.d"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
MUTEX_STALE_S = 60.0  # a mutex left by a process that died in the instant it held it
#: squeue's states of a job that still holds (or will hold) its run directory
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                       "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
                       "SPECIAL_EXIT", "POWER_UP_NODE"}
TRAINING, QUEUED = "training", "queued"


def slurm_job_id(env=None) -> str | None:
    """This process's SLURM job as squeue names it: ``<array job>_<task>`` for an array task, else the job id."""
    env = os.environ if env is None else env
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID") or None


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 = state, field 22 = start time), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def pid_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later process with its pid."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host runs (not a zombie), and is the one that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = _proc_stat(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no /proc (not Linux): trust kill(pid, 0)
    if fields[0] == "Z":
        return False
    return start is None or len(fields) <= 19 or fields[19] == start


def slurm_state(job: str) -> str | None:
    """squeue's state of ``job`` (``RUNNING``, ``PENDING``, ...); "" when squeue no longer knows it; None when
    there is no squeue or it does not answer (then the SLURM test says nothing)."""
    try:
        p = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return "" if "invalid job id" in p.stderr.lower() else None
    states = p.stdout.split()
    return states[0] if states else ""


def age(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s / 3600:.1f} h"


@dataclass
class Holder:
    """What ``run.lock`` says about its holder."""

    state: str = TRAINING  # training (a process holds it) or queued (a submitted SLURM job will)
    host: str | None = None
    pid: int | None = None
    pid_start: str | None = None
    slurm_job: str | None = None
    since: float = 0.0
    heartbeat: float = 0.0
    token: str = ""

    @classmethod
    def me(cls, state: str = TRAINING, slurm_job: str | None = None) -> Holder:
        now = time.time()
        if state == QUEUED:
            return cls(QUEUED, socket.gethostname(), None, None, slurm_job, now, now, uuid.uuid4().hex)
        pid = os.getpid()
        return cls(TRAINING, socket.gethostname(), pid, pid_start(pid), slurm_job or slurm_job_id(), now, now,
                   uuid.uuid4().hex)

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.state == QUEUED:
            return f"SLURM job {self.slurm_job} (queued from {self.host} {age(now - self.since)} ago)"
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job} (heartbeat {age(now - self.heartbeat)} ago)"

    def way_out(self) -> str:
        if self.slurm_job:
            return f"scancel {self.slurm_job}"
        return f"kill {self.pid}" + ("" if self.host == socket.gethostname() else f" on {self.host}")


def read(run_dir: Path) -> Holder | None:
    """The holder ``run.lock`` names; None without a lock. A lock that cannot be read is a holder of nothing
    (host and pid unknown): it is stale at once."""
    path = Path(run_dir) / LOCK_NAME
    try:
        data = json.loads(path.read_text())
        return Holder(**{k: data.get(k) for k in Holder.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return Holder(state="unreadable", token=f"unreadable:{_mtime(path)}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def gone(holder: Holder, stale_after_s: float = STALE_AFTER_S, now: float | None = None) -> str | None:
    """Why ``holder`` no longer holds its run directory, or None while it does (the module docstring's rules)."""
    now = time.time() if now is None else now
    if holder.state == "unreadable":
        return "the lock file cannot be read"
    host, mine = socket.gethostname(), slurm_job_id()
    if holder.slurm_job and mine and holder.slurm_job == mine and holder.pid != os.getpid():
        return f"it is an earlier start of this SLURM job ({mine})"
    if holder.state == TRAINING:
        if holder.host == host and holder.pid is not None:
            if holder.pid == os.getpid():
                return "it is an earlier run of this process"
            if not pid_alive(int(holder.pid), holder.pid_start):
                return f"pid {holder.pid} has ended"
        if now - float(holder.heartbeat or 0) > float(stale_after_s):
            return f"its heartbeat is {age(now - float(holder.heartbeat or 0))} old (lock.stale_after_s={stale_after_s:g})"
    if holder.slurm_job:
        state = slurm_state(holder.slurm_job)
        if state is not None and state not in ACTIVE_SLURM_STATES:
            return f"SLURM job {holder.slurm_job} is no longer pending or running ({state or 'squeue no longer knows it'})"
    return None


def live_holder(run_dir: Path, stale_after_s: float = STALE_AFTER_S) -> Holder | None:
    """The live holder of ``run_dir``, or None (no lock, or a stale one)."""
    holder = read(run_dir)
    return holder if holder is not None and gone(holder, stale_after_s) is None else None


class RunInUse(UserError):
    """The run directory has a live holder: this launch trains nothing."""

    def __init__(self, run_dir: Path, holder: Holder):
        self.run_dir, self.holder = Path(run_dir), holder
        doing = "is queued as" if holder.state == QUEUED else "is being trained by"
        super().__init__(f"{run_dir} {doing} {holder.describe()}; this launch trains nothing: wait for it, "
                         f"or stop it ({holder.way_out()}) and run the same command again to resume")


class LockLost(UserError):
    """Another process took over this run's lock (this one was stopped longer than lock.stale_after_s)."""


class RunLock:
    """``run.lock`` of one run directory, held by this process (the module docstring)."""

    def __init__(self, run_dir: Path, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
                 holder: Holder | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.heartbeat_s, self.stale_after_s = float(heartbeat_s), float(stale_after_s)
        self.holder = holder or Holder.me()
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    # -- files
    def _write(self, exclusive: bool) -> bool:
        """Write the lock: exclusively (False if a lock exists) or replacing it."""
        tmp = self.run_dir / f".{LOCK_NAME}.{self.holder.token}.tmp"
        tmp.write_text(json.dumps(asdict(self.holder), indent=1) + "\n")
        try:
            if not exclusive:
                os.replace(tmp, self.path)
                return True
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here: an exclusive create (its content appears a moment later)
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w") as fh:
                    fh.write(tmp.read_text())
            return True
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _mutex(self):
        """Held for the instant of a takeover or a renewal; yields False if another process holds it."""
        mutex = self.run_dir / MUTEX_NAME
        try:
            mutex.mkdir()
        except FileExistsError:
            if time.time() - _mtime(mutex) > MUTEX_STALE_S:  # its holder died holding it
                with contextlib.suppress(OSError):
                    mutex.rmdir()
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                mutex.rmdir()

    # -- taking and giving back
    def acquire(self, heartbeat: bool = True) -> str | None:
        """Take the lock; returns the warning line of a takeover (None if the lock was free). Raises
        :class:`RunInUse` while a live process (or a queued SLURM job) holds it."""
        note = None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            note = self._take()
        except OSError as err:  # a full or read-only disk: one line, like every other write a run cannot make
            raise UserError(f"{self.path}: cannot write the run's lock ({err.strerror or err}); free space (or fix "
                            "the file system) and run the same command again") from None
        self.held = True
        if heartbeat:
            self._thread = threading.Thread(target=self._beat, name="spatialprobe-run-lock", daemon=True)
            self._thread.start()
        return note

    def _take(self) -> str | None:
        note = None
        for _ in range(50):
            if self._write(exclusive=True):
                break
            holder = read(self.run_dir)
            if holder is None:
                continue  # released in between: try again
            if holder.state == "unreadable" and time.time() - _mtime(self.path) < 5:
                time.sleep(0.1)  # being written this instant (a file system without hard links)
                continue
            why = gone(holder, self.stale_after_s)
            if why is None:
                raise RunInUse(self.run_dir, holder)
            with self._mutex() as mine:
                if mine and (read(self.run_dir) or Holder()).token == holder.token:
                    self._write(exclusive=False)
                    if not (holder.state == QUEUED and holder.slurm_job == slurm_job_id()):  # not its own reservation
                        whose = holder.describe() if holder.state != "unreadable" else "an unreadable lock"
                        note = f"spatialprobe: warning: {self.run_dir}: took over run.lock of {whose}: {why}"
                    break
            time.sleep(0.05)  # another process is taking it over: look again
        else:
            holder = read(self.run_dir)
            raise RunInUse(self.run_dir, holder or Holder(host="?", pid=0))
        return note

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._mutex() as mine:
                if not mine:
                    continue  # someone is looking at the lock this instant: renew at the next beat
                current = read(self.run_dir)
                if current is None or current.token != self.holder.token:
                    whose = current.describe() if current is not None and current.state != "unreadable" else "nobody"
                    self.lost = (f"{self.run_dir}: run.lock was taken over by {whose} (this process was stopped "
                                 f"longer than lock.stale_after_s={self.stale_after_s:g}); this process stops so that "
                                 "only one trains the run")
                    print(f"spatialprobe: warning: {self.lost}", file=sys.stderr, flush=True)
                    return
                self.holder.heartbeat = time.time()
                with contextlib.suppress(OSError):  # a full disk: the next beat tries again
                    self._write(exclusive=False)

    def release(self) -> None:
        """Give the lock back (if it is still this process's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self.held:
            return
        self.held = False
        for _ in range(40):
            with self._mutex() as mine:
                if not mine:  # another process looks at the lock this instant
                    time.sleep(0.05)
                    continue
                current = read(self.run_dir)
                if current is not None and current.token == self.holder.token:
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                return


def reserve(run_dir: Path, slurm_job: str, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Mark ``run_dir`` as queued for SLURM job ``slurm_job`` (a submitted array task). Returns a takeover's
    warning line; raises :class:`RunInUse` if the run has a live holder (the job itself, when it already
    started, holds it: the reservation is then not needed)."""
    lock = RunLock(run_dir, stale_after_s=stale_after_s, holder=Holder.me(QUEUED, slurm_job))
    return lock.acquire(heartbeat=False)


def lock_guard(lock: RunLock):
    """A Lightning callback that stops training at the next batch once ``lock`` was taken over."""
    import pytorch_lightning as pl

    class LockGuard(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if lock.lost:
                raise LockLost(lock.lost)

    return LockGuard()
