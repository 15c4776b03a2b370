"""One result record per run: ``result.json`` in the run directory.

The record is the single source of truth for collection and figures. It is always written
atomically (temporary file in the same directory, fsync, rename), so a crash leaves either the
previous version or the new one, never a torn file. ``status`` is ``running`` while the run
works, ``complete`` only after every metric is in, and ``failed`` (with ``reason``) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

RECORD_NAME = "result.json"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"

# Config keys that do not change a run's result; they are left out of its identity hash.
VOLATILE_KEYS = ("resume", "paths", "logger", "name", "experiment_name", "dry_run", "cost", "checkpoint", "debug",
                 "trainer.enable_progress_bar", "trainer.log_every_n_steps")


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _drop(config: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


def config_hash(config: dict) -> str:
    """Identity of a run: hash of its resolved config without keys that do not affect results."""
    stripped = json.loads(json.dumps(config, default=str))
    for key in VOLATILE_KEYS:
        _drop(stripped, key)
    blob = json.dumps(stripped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def git_state(repo: Path) -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(dirty) if dirty is not None else None}


class RunRecord:
    """The result record of one run directory."""

    def __init__(self, run_dir: Path, write: bool = True):
        self.run_dir = Path(run_dir)
        self.write = write  # False in DDP processes other than rank 0: they read the record, never write it
        self.path = self.run_dir / RECORD_NAME
        self.data: dict[str, Any] = read_json(self.path) or {}
        self._t0 = time.time()

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    def is_complete_for(self, chash: str) -> bool:
        return self.status == COMPLETE and self.data.get("config_hash") == chash

    def start(self, config: dict, chash: str, **fields: Any) -> None:
        previous_wall = self.data.get("wall_time_s", 0.0) if self.data.get("config_hash") == chash else 0.0
        self._wall_before = float(previous_wall or 0.0)
        attempts = int(self.data.get("attempts", 0)) + 1 if self.data.get("config_hash") == chash else 1
        self.data = {
            "status": RUNNING,
            "reason": None,
            "config_hash": chash,
            "attempts": attempts,
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **fields,
            "config": config,
        }
        self._write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write()

    def complete(self, **fields: Any) -> None:
        self.update(status=COMPLETE, reason=None, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields)

    def fail(self, reason: str) -> None:
        self.update(status=FAILED, reason=reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def _write(self) -> None:
        self.data["wall_time_s"] = round(getattr(self, "_wall_before", 0.0) + time.time() - self._t0, 3)
        # keep the config last: the interesting fields come first when a person opens the file
        config = self.data.pop("config", None)
        if config is not None:
            self.data["config"] = config
        if self.write:
            write_json_atomic(self.path, self.data)
