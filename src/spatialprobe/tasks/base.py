"""What every task shares: the Lightning module's optimiser, schedule and checkpoint contents, and the
:class:`Task` declaration a task module makes.

A task (``task=classify``, ``augshift``, ``segment``, ``detect``) is one module of this package plus one
yaml in ``conf/task/``. The module defines a :class:`TaskModule` subclass (its loss and metrics) and one
:class:`Task` object, ``TASK``, which tells the runner how to build the network and the module, which
callbacks the run needs and which fields the run's record gets. The yaml names the task, the metric
that picks the best checkpoint (``task.monitor``) and the task's default recipe. The runner
(:mod:`spatialprobe.launch.runner`) and ``evaluate`` ask the task; they never ask for its name. The
keys a task adds are checked, without torch, by :func:`spatialprobe.config.schema.check_task`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from spatialprobe.errors import DivergenceError

STAGES = ("train", "val", "test")


def effective_lr(recipe: dict, world_size: int = 1) -> float:
    """``recipe.lr``, scaled linearly with the global batch when ``recipe.lr_scale_batch`` is set.

    lr_used = lr * batch_size * world_size / lr_scale_batch (Goyal et al. 2017): the ImageNet recipe's
    0.1 per 256 images. ``batch_size`` is per device, so the global batch counts every device.
    """
    per = recipe.get("lr_scale_batch")
    return float(recipe["lr"]) * (int(recipe["batch_size"]) * world_size / per if per else 1.0)


def build_optimizer(params, recipe: dict, world_size: int = 1) -> torch.optim.Optimizer:
    lr = effective_lr(recipe, world_size)
    if recipe["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(recipe.get("betas", (0.9, 0.999))),
                                weight_decay=recipe["weight_decay"])
    if recipe["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=float(recipe["alpha"]), eps=float(recipe["eps"]),
                                   momentum=float(recipe["momentum"]), weight_decay=recipe["weight_decay"])
    return torch.optim.SGD(params, lr=lr, momentum=recipe["momentum"],
                           nesterov=bool(recipe.get("nesterov", False)), weight_decay=recipe["weight_decay"])


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: dict, epochs: int, total_steps: int) -> dict | None:
    """The recipe's learning-rate schedule, stepped every optimiser step; every schedule scales with the run.

    ``multistep``: x ``gamma`` at the ``milestones`` (fractions of the run, or epochs when >= 1);
    ``exponential``: x ``gamma`` after every epoch; ``poly``: lr * (1 - step / steps) ** ``poly_power``;
    ``cosine``: to 0 over the run; ``onecycle``: torch's one-cycle; ``constant``. ``warmup_epochs``
    (all but onecycle): a linear ramp over the first n steps (lr * i / n at step i = 1..n); milestones still
    count from the start of the run, the decays (exponential, poly, cosine) start after the ramp.
    """
    from torch.optim import lr_scheduler as sched

    kind = recipe.get("schedule", "constant")
    total_steps = max(1, total_steps)
    per_epoch = max(1, total_steps // max(1, epochs))
    if kind == "onecycle":
        return {"scheduler": sched.OneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                                              total_steps=total_steps), "interval": "step"}
    warm = min(total_steps - 1, round(float(recipe.get("warmup_epochs") or 0) * per_epoch))
    rest = total_steps - warm  # steps of the main schedule, which starts when the warm-up ends
    if kind == "multistep":
        epochs_at = sorted({max(1, round(f * epochs)) if f < 1 else int(f) for f in recipe["milestones"]})
        main = sched.MultiStepLR(optimizer, milestones=[max(1, e * per_epoch - warm) for e in epochs_at],
                                 gamma=recipe["gamma"])
    elif kind == "exponential":
        main = sched.StepLR(optimizer, step_size=per_epoch, gamma=recipe["gamma"])
    elif kind == "poly":
        main = sched.PolynomialLR(optimizer, total_iters=rest, power=float(recipe["poly_power"]))
    elif kind == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=rest)
    elif warm:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        return None
    if warm:
        ramp = sched.LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=max(1, warm - 1))
        main = sched.SequentialLR(optimizer, [ramp, main], milestones=[warm])
    return {"scheduler": main, "interval": "step"}


class TaskModule(pl.LightningModule):
    """The Lightning module of every task: ``step(batch, stage)`` returns the loss and updates the stage's
    metrics; this base trains with the recipe's optimiser and schedule, stops on a NaN / inf loss and
    keeps the run's resolved config in every checkpoint."""

    def __init__(self, model: nn.Module, recipe: dict, config: dict | None = None,
                 steps_per_epoch: int | Callable[[int], int] | None = None):
        super().__init__()
        self.model = model
        # Known up front from the data sizes. Lightning's estimated_stepping_batches would build the
        # train loader before a checkpoint is restored, and the loader's mid-epoch state would be lost.
        # A callable gets the number of processes (DDP: every rank trains on its share of the data).
        self.steps_per_epoch = steps_per_epoch
        self.recipe = dict(recipe)
        self.config = config or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def step(self, batch, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch, "train")
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                f"lower recipe.lr (now {self.recipe['lr']}) or set trainer.gradient_clip_val"
            )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self) -> Any:
        return self._with_scheduler(build_optimizer(self.parameters(), self.recipe, self.trainer.world_size))

    def _with_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        if self.steps_per_epoch is not None:
            per_epoch = self.steps_per_epoch
            per_epoch = per_epoch(self.trainer.world_size) if callable(per_epoch) else per_epoch
            steps = self._limited(per_epoch) * epochs // max(1, self.trainer.accumulate_grad_batches)
        else:
            steps = self.trainer.estimated_stepping_batches
            steps = int(steps) if math.isfinite(steps) else 1
        scheduler = build_scheduler(optimizer, self.recipe, epochs, steps)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _limited(self, n: int) -> int:
        limit = self.trainer.limit_train_batches
        if isinstance(limit, int):
            return min(n, limit)
        return max(1, int(n * float(limit))) if limit is not None else n

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # everything needed to rebuild the network from the checkpoint alone (spatialprobe.evaluate)
        checkpoint["spatialprobe_config"] = self.config


class Task:
    """What a task module declares (module docstring). The defaults fit a classifier-like task."""

    #: the task's name: conf/task/<name>.yaml, module spatialprobe.tasks.<name>
    name = ""

    def network(self, cfg: DictConfig, model: nn.Module) -> nn.Module:
        """The network this task trains, built on the (modified) registry network."""
        return model

    def module(self, cfg: DictConfig, network: nn.Module, config: dict, steps_per_epoch=None,
               datamodule=None) -> TaskModule:
        raise NotImplementedError

    def callbacks(self, cfg: DictConfig, eval_seed: int) -> list[pl.Callback]:
        """Callbacks of this task's runs (shift consistency, where the config asks for it)."""
        from spatialprobe.tasks.consistency import consistency_callbacks

        return consistency_callbacks(cfg, eval_seed)

    def record_fields(self, cfg: DictConfig, module: TaskModule) -> dict:
        """Record fields beyond the logged metrics (which every run records as they are, final and best)."""
        return {}

    @staticmethod
    def recipe(cfg: DictConfig) -> dict:
        return OmegaConf.to_container(cfg.recipe, resolve=True)


