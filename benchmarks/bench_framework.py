"""Framework: time per training step of the project's Lightning path vs a hand-written loop.

Same network (VGG-16-BN at width 0.25 with a 256-wide classifier, the CPU-scale model of the spec's
calibration, same initial weights), same batches
(the device-resident loader over the same CIFAR-10 images, batch 128), same optimiser and
schedule (the ``cpu`` recipe: SGD nesterov, one-cycle). The Lightning side is what
``spatialprobe.train`` runs: :class:`spatialprobe.module.Classifier` (loss, top-1/top-5 metrics,
logging) in a ``pytorch_lightning.Trainer`` with the project's seed callback and CSV logger. The
hand-written side is forward, cross-entropy, backward, optimiser and scheduler step. Every step
after a few warm-up steps is timed (from the end of one step to the end of the next, so fetching
the batch counts); the two sides alternate and the medians are compared.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
from common import cifar10
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.callbacks import SeedSchedule
from spatialprobe.data.loader import TensorBatches
from spatialprobe.models import build_model
from spatialprobe.module import Classifier, build_optimizer, build_scheduler

BATCH, WARMUP = 128, 3
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def setup(steps: int):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=vgg16", "model.width=0.25", "model.fc_width=256",
                                                  "recipe=cpu"])
    recipe = OmegaConf.to_container(cfg.recipe, resolve=True)
    x, y, what = cifar10(BATCH * (WARMUP + steps))
    loader = TensorBatches(torch.from_numpy(x), torch.from_numpy(y), BATCH, MEAN, STD, shuffle=True, augment=True,
                           drop_last=True, seed=0)

    def model():
        torch.manual_seed(0)
        return build_model(cfg.model, 10, 32)

    return model, loader, recipe, what


def hand_written(model, loader, recipe) -> list[float]:
    """Seconds of every step after the warm-up (batch end to batch end) of a plain PyTorch loop."""
    model.train()
    opt = build_optimizer(model.parameters(), recipe)
    sched = build_scheduler(opt, recipe, 1, len(loader))["scheduler"]
    ends = []
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends[WARMUP - 1 : -1], ends[WARMUP:], strict=True)]


class StepTimer(pl.Callback):
    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's per-fit info lines and warnings would drown the benchmark's output."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def lightning(model, loader, recipe) -> list[float]:
    """Seconds of every step after the warm-up of the project's path: Classifier in a Trainer."""
    module = Classifier(model, 10, recipe)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
            logger=pl.loggers.CSVLogger(tmp), callbacks=[SeedSchedule(0, 1), timer], enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10, default_root_dir=tmp,
        )
        trainer.fit(module, train_dataloaders=loader)
    ends = timer.ends
    return [b - a for a, b in zip(ends[WARMUP - 1 : -1], ends[WARMUP:], strict=True)]


def run(args) -> list[dict]:
    steps = 10 if args.quick else 25
    model, loader, recipe, what = setup(steps)
    hand, light = [], []
    for _ in range(args.repeats):  # alternate, so that a burst of load elsewhere hits both sides
        hand += hand_written(model(), loader, recipe)
        light += lightning(model(), loader, recipe)
    h, lt = statistics.median(hand), statistics.median(light)
    print(f"  s/step hand-written: median {h:.4f} min {min(hand):.4f}; Lightning: median {lt:.4f} min {min(light):.4f}")
    return [{
        "name": "framework: time per training step",
        "baseline": f"{h * 1e3:.1f} ms (hand-written loop)",
        "candidate": f"{lt * 1e3:.1f} ms (Lightning + Classifier)",
        "ratio": lt / h,
        "target": "<= 1.05x",
        "setup": f"VGG-16-BN x0.25, {what}, batch {BATCH}, SGD one-cycle; median of {args.repeats} x {steps} "
                 f"steps per side (after {WARMUP} warm-up steps, sides alternating), "
                 f"{torch.get_num_threads()} threads",
    }]
