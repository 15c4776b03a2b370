"""Tasks: what a training run optimises and measures. One module + one yaml (``conf/task/<name>.yaml``) each.

* ``classify`` (default, :mod:`~spatialprobe.tasks.classify`): cross-entropy, top-1 / top-5;
* ``augshift`` (:mod:`~spatialprobe.tasks.augshift`): P's AugShift loss on two shifted views;
* ``segment`` (:mod:`~spatialprobe.tasks.segment`): DeepLab on Cityscapes, mIoU;
* ``detect`` (:mod:`~spatialprobe.tasks.detect`): S0's YOLO-like detector, VOC mAP and error shares.

Shift consistency (``eval.consistency``, :mod:`~spatialprobe.tasks.consistency`) is measured for any
classification task. A task module defines ``TASK``, a :class:`~spatialprobe.tasks.base.Task`; this
registry finds it by the task's name, so adding a task is its module and its yaml (and, if it adds
keys, their checks in :func:`spatialprobe.config.schema.check_task`).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from spatialprobe.config.schema import task_name
from spatialprobe.errors import UserError
from spatialprobe.tasks.base import Task


def get(cfg: DictConfig | str) -> Task:
    """The task a config names (``task.name``; default ``classify``), or the task of that name."""
    name = cfg if isinstance(cfg, str) else task_name(cfg)
    return import_module(f"spatialprobe.tasks.{name}").TASK


def build_network(cfg: DictConfig, model):
    """The network ``cfg``'s task trains, on the (modified) registry network ``model``."""
    return get(cfg).network(cfg, model)


def load_checkpoint(path: Path, key: str = "ckpt") -> tuple[dict, DictConfig]:
    """A spatialprobe training checkpoint and the resolved training config it holds (read without running
    code from the file: :func:`spatialprobe.run.checkpoints.load`). ``key``: the command's name for the file."""
    from spatialprobe.run.checkpoints import UnreadableFile, load

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}={str(path)!r}: no such checkpoint file")
    try:
        ckpt = load(path, f"{key}={str(path)!r}")
    except UnreadableFile as err:
        raise UserError(f"{key}={str(path)!r}: unreadable checkpoint ({err.reason})") from None
    if not isinstance(ckpt, dict) or "spatialprobe_config" not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"{key}={str(path)!r}: not a spatialprobe checkpoint (no training config inside)")
    return ckpt, OmegaConf.create(ckpt["spatialprobe_config"])


def restore(ckpt: dict, tcfg: DictConfig):
    """The trained network of a checkpoint: the baseline build, the training surgery, the task's network,
    then the trained weights."""
    from spatialprobe import surgery
    from spatialprobe.models import build_model

    size = int(tcfg.dataset.image_size)
    model = build_model(tcfg.model, int(tcfg.dataset.num_classes), size)
    surgery.apply(model, tcfg.method, int(tcfg.k), size)
    network = build_network(tcfg, model)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    network.load_state_dict(state)
    return network


__all__ = ["Task", "build_network", "get", "load_checkpoint", "restore"]
