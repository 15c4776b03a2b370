"""Checkpoints and weight files: read without running code from them, and the checkpoint a run resumes from.

**Safe loading.** A ``.ckpt`` or ``.pth`` file is a pickle, and a pickle can call any function while it is
read (``os.system`` through ``__reduce__``). Checkpoints are what researchers hand each other, so every
file spatialprobe reads goes through :func:`load`: ``torch.load(weights_only=True)``, whose unpickler
builds tensors and plain data only and refuses any other Python object before it is created. That covers
``evaluate``, ``rank``, ``decode``, the segmentation probe, ``model.pretrained``,
``model.weights_backbone`` and Lightning's own loading when a run resumes or tests its best checkpoint
(:class:`spatialprobe.run.callbacks.AtomicCheckpointIO`). Nothing is added with
``torch.serialization.add_safe_globals``: what a spatialprobe checkpoint holds is, all of it, in torch's
weights-only set (tests/test_safety.py loads the checkpoints of every task, optimiser and schedule this
way): tensors, ``dict`` / ``OrderedDict`` (state dicts), ``collections.Counter`` (MultiStepLR's
milestones), lists, tuples, strings, numbers, booleans and None; the run's config is kept as plain
containers (``spatialprobe_config``), the loops', loader's, callbacks', optimiser's and schedulers'
states are plain too.

A file that holds anything else gets one line naming the object it tried to create (``posix.system``)
and exit status 2 (:class:`UnsafeFile`); a file that is not a complete checkpoint (truncated, empty,
another format) is :class:`UnreadableFile`.

**Resuming.** ``last.ckpt`` is replaced atomically, and the one it replaces is kept as
``previous.ckpt`` (:class:`~spatialprobe.run.callbacks.AtomicCheckpointIO`). :func:`resume_point` picks
the newest checkpoint of a run that loads (``last.ckpt``; if it is damaged, the newer of
``previous.ckpt`` and ``best.ckpt``) and says which one it took and how many training steps that costs.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spatialprobe.errors import UserError, one_line

#: the run's checkpoints, newest first by construction: last.ckpt, the last.ckpt before it, the best one
LAST, PREVIOUS, BEST = "last.ckpt", "previous.ckpt", "best.ckpt"
RESUME_CANDIDATES = (LAST, PREVIOUS, BEST)

# the weights-only unpickler's refusals of an object (not of a damaged file)
_REFUSED = re.compile(r"GLOBAL (\S+)|call reduce for unrecognized function (\S+)|create new object .* got (\S+)")


class UnsafeFile(UserError):
    """The file holds Python objects other than tensors and plain data: loading it could run code."""

    def __init__(self, label: str, path: Path, what: str):
        self.path, self.what = Path(path), what
        super().__init__(f"{label}: refused: the file holds {what}, which is not a tensor or plain data, and loading it "
                         "could run code (every file is read with torch.load(weights_only=True)); use a checkpoint "
                         "written by spatialprobe.train, or a plain state dict, from a source you trust")


class UnreadableFile(UserError):
    """Not a complete checkpoint: truncated, empty, or another format."""

    def __init__(self, label: str, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{label}: unreadable {path} ({reason})")


def describe_error(err: BaseException) -> str:
    """One short line for why ``torch.load`` failed."""
    text = one_line(err)
    if "central directory" in text:
        return "truncated: the end of the file is missing"
    if isinstance(err, EOFError) or (isinstance(err, OSError) and getattr(err, "errno", None) == 22):
        return "empty or truncated"
    if "not a ZIP archive" in text or "invalid load key" in text:
        return "not a torch checkpoint"
    if "Weights only load failed" in str(err):  # torch's long advice, then what its reader met
        inner = str(err).split("\n\nCheck the documentation")[0].rsplit("\n\n", 1)[-1]
        return f"not a torch checkpoint, or one the weights-only reader cannot read ({one_line(inner)[:100]})"
    return f"{type(err).__name__}: {text[:160]}"


def load(path: str | Path, label: str | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, its failures as one-line user errors.

    ``label`` names the file the way the user gave it (``ckpt='runs/x/last.ckpt'``, ``model.pretrained``);
    default: the path. Raises :class:`UnsafeFile` for a file that would create other Python objects (its
    payload never runs) and :class:`UnreadableFile` for a damaged one.
    """
    import pickle

    import torch

    path = Path(path)
    label = label or str(path)
    try:
        with warnings.catch_warnings():  # torch's note on a pickle protocol it was not written with: the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _REFUSED.search(str(err))
        if found:
            raise UnsafeFile(label, path, next(g for g in found.groups() if g)) from None
        raise UnreadableFile(label, path, describe_error(err)) from None
    except FileNotFoundError:
        raise UnreadableFile(label, path, "no such file") from None
    except Exception as err:  # RuntimeError (zip reader), EOFError, OSError (a seek past the end), ValueError ...
        raise UnreadableFile(label, path, describe_error(err)) from None


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from (None: no checkpoint at all), and what was passed over."""

    path: Path | None = None
    step: int | None = None
    checkpoint: dict | None = None  # already loaded: Lightning gets it without reading the file again
    unreadable: dict[str, str] = field(default_factory=dict)  # file name -> why it was passed over
    newest_step: int | None = None  # the step of the newest checkpoint the run wrote (the record's checkpoint_steps)

    @property
    def steps_lost(self) -> int | None:
        if self.step is None or self.newest_step is None:
            return None
        return max(0, self.newest_step - self.step)

    def note(self, run_dir: Path) -> str | None:
        """The one line a fallback earns (None when last.ckpt itself was used)."""
        if not self.unreadable or self.path is None:
            return None
        passed = "; ".join(f"{name}: {why}" for name, why in self.unreadable.items())
        lost = self.steps_lost
        cost = (f"{lost} training step(s) lost (the newest checkpoint was at step {self.newest_step})" if lost is not None
                else "the steps since it are trained again")
        return (f"spatialprobe: warning: {run_dir / 'checkpoints'}: passed over {passed}; resuming from "
                f"{self.path.name} at step {self.step}: {cost}")


def resume_point(ckpt_dir: Path, belongs, newest_step: int | None = None) -> ResumePoint:
    """The newest readable checkpoint of a run (``last.ckpt`` first; then the newer of ``previous.ckpt`` and
    ``best.ckpt``). ``belongs(checkpoint) -> bool`` says whether a loaded checkpoint is this run's (its config);
    one that is not is passed over like a damaged one. A file that would run code stops everything
    (:class:`UnsafeFile`): it did not get there by accident."""
    point = ResumePoint(newest_step=newest_step)
    found: list[tuple[int, str, dict]] = []
    for name in RESUME_CANDIDATES:
        path = Path(ckpt_dir) / name
        if not path.is_file():
            continue
        try:
            ckpt = load(path, str(path))
        except UnreadableFile as err:
            point.unreadable[name] = f"unreadable ({err.reason})"
            continue
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
            point.unreadable[name] = "not a Lightning checkpoint"
            continue
        if not belongs(ckpt):
            point.unreadable[name] = "a checkpoint of another configuration"
            continue
        found.append((int(ckpt["global_step"]), name, ckpt))
        if name == LAST:
            break  # the newest by construction: the others are not read
    if found:
        step, name, ckpt = max(found, key=lambda f: (f[0], -RESUME_CANDIDATES.index(f[1])))
        point.path, point.step, point.checkpoint = Path(ckpt_dir) / name, step, ckpt
        if point.newest_step is None and LAST not in point.unreadable:
            point.newest_step = step
    return point


def set_aside(ckpt_dir: Path, names) -> list[Path]:
    """Rename unreadable checkpoints to ``<name>.unreadable`` (kept for a look, never resumed from)."""
    moved = []
    for name in names:
        path = Path(ckpt_dir) / name
        if path.exists():
            target = path.with_name(f"{name}.unreadable")
            path.replace(target)
            moved.append(target)
    return moved
