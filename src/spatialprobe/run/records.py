"""One result record per run: ``result.json`` in the run directory.

The record is the single source of truth for collection and figures. It is always written
atomically (temporary file in the same directory, fsync, rename), so a crash leaves either the
previous version or the new one, never a torn file. ``status`` is ``running`` while the run
works, ``complete`` only after every metric is in, and ``failed`` (with ``reason``) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from spatialprobe.config.schema import is_result_neutral
from spatialprobe.run.files import atomic_file

RECORD_NAME = "result.json"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_file(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def rounded(value, digits: int = 4) -> float | None:
    """A metric as a record holds it: a float rounded to ``digits`` decimals (None stays None)."""
    return None if value is None else round(float(value), digits)


def read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _result_relevant(node: Any, prefix: str = "") -> Any:
    """``node`` (a resolved config) without its result-neutral keys (spatialprobe.config.schema.RESULT_NEUTRAL_KEYS)."""
    if not isinstance(node, dict):
        return node
    return {k: _result_relevant(v, f"{prefix}{k}.") for k, v in node.items() if not is_result_neutral(f"{prefix}{k}")}


def config_hash(config: dict) -> str:
    """Identity of a run: hash of its resolved config without the keys that do not change a result."""
    stripped = _result_relevant(json.loads(json.dumps(config, default=str)))
    blob = json.dumps(stripped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _leaves(node: Any, prefix: str = "") -> dict:
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    out: dict = {}
    for k, v in node.items():
        out.update(_leaves(v, f"{prefix}{k}."))
    return out


def config_diff(a: dict, b: dict) -> list[str]:
    """The result-relevant dotted keys whose values differ between two resolved configs."""
    la = _leaves(_result_relevant(json.loads(json.dumps(a, default=str))))
    lb = _leaves(_result_relevant(json.loads(json.dumps(b, default=str))))
    return sorted(k for k in la.keys() | lb.keys() if la.get(k, "<absent>") != lb.get(k, "<absent>"))


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
        if isinstance(self.data.get("config"), dict):
            # the stored run's identity under today's result-neutral keys (a record written before a key
            # joined them still matches its own configuration)
            self.data["config_hash"] = config_hash(self.data["config"])
        self._t0 = time.time()
        self._wall_before = float(self.data.get("wall_time_s") or 0.0)  # a record failed before start() keeps its time

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
        self.data["wall_time_s"] = round(self._wall_before + time.time() - self._t0, 3)
        # keep the config last: the interesting fields come first when a person opens the file
        config = self.data.pop("config", None)
        if config is not None:
            self.data["config"] = config
        if self.write:
            write_json_atomic(self.path, self.data)
