"""Framework: time per training step of the project's Lightning path vs a hand-written loop.

Same network (VGG-16-BN at width 0.25 with a 256-wide classifier, the CPU-scale model of the
spec's calibration, same initial weights), same batches (the device-resident loader over the
same CIFAR-10 images, batch 128), same optimiser and schedule (the ``cpu`` recipe: SGD nesterov,
one-cycle). The Lightning side is what ``spatialprobe.train`` runs:
:class:`spatialprobe.tasks.base.Classifier` (loss, top-1/top-5 metrics, logging) in a
``pytorch_lightning.Trainer`` with the project's seed callback and CSV logger. The hand-written
side is: next batch, forward, cross-entropy, backward, optimiser and scheduler step.

The two sides are interleaved step by step (after every Lightning step, a callback runs one
hand-written step on its own copy of the network), so that load from other processes on a
shared machine hits both alike. A Lightning step is timed from the end of the hand-written step
before it to the end of its own batch (data, hooks, logging, optimiser: all of Lightning's
work) and paired with the hand-written step right after it; the ratio reported is the median of
the per-pair ratios over all steps after a short warm-up (robust to the load drifting).
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
from common import cifar10, compose_train

from spatialprobe.data.loader import TensorBatches
from spatialprobe.models import build_model
from spatialprobe.run.callbacks import SeedSchedule
from spatialprobe.tasks.base import build_optimizer, build_scheduler
from spatialprobe.tasks.classify import Classifier

BATCH, WARMUP = 128, 3
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class HandWrittenInBetween(pl.Callback):
    """After every Lightning step, one step of a plain PyTorch loop on another copy of the network."""

    def __init__(self, model: torch.nn.Module, loader: TensorBatches, recipe: dict):
        self.model = model.train()
        self.opt = build_optimizer(model.parameters(), recipe)
        self.sched = build_scheduler(self.opt, recipe, 1, len(loader))["scheduler"]
        self.batches = iter(loader)
        self.mark: float | None = None
        self.lightning: list[float] = []
        self.hand: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        start = time.perf_counter()
        if self.mark is not None:
            self.lightning.append(start - self.mark)
        x, y = next(self.batches)
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.mark = time.perf_counter()
        self.hand.append(self.mark - start)


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


def run(args) -> list[dict]:
    steps, batch = (4, 32) if args.quick else (40, BATCH)  # --quick: a smoke run of seconds, not a measurement
    cfg = compose_train("model=vgg16", "model.width=0.25", "model.fc_width=256", "recipe=cpu")
    recipe = dict(cfg.recipe)
    x, y, what = cifar10(batch * (WARMUP + steps + 1))
    loader = TensorBatches(torch.from_numpy(x), torch.from_numpy(y), batch, MEAN, STD, shuffle=True, augment=True,
                           drop_last=True, seed=0)

    def model():
        torch.manual_seed(0)
        return build_model(cfg.model, 10, 32)

    hand = HandWrittenInBetween(model(), loader, recipe)
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
            logger=pl.loggers.CSVLogger(tmp), callbacks=[SeedSchedule(0, 1), hand], enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10, default_root_dir=tmp,
        )
        trainer.fit(Classifier(model(), 10, recipe), train_dataloaders=loader)
    # lightning[i] is the Lightning step i + 1 (the first has no start mark); hand[i + 1] follows it
    light_s, hand_s = hand.lightning[WARMUP:], hand.hand[WARMUP + 1 :]
    h, lt = statistics.median(hand_s), statistics.median(light_s)
    ratio = statistics.median(a / b for a, b in zip(light_s, hand_s, strict=True))
    print(f"  s/step over {len(hand_s)} interleaved steps: hand-written median {h:.4f} (min {min(hand_s):.4f}), "
          f"Lightning median {lt:.4f} (min {min(light_s):.4f}); median of paired ratios {ratio:.3f}")
    return [{
        "benchmark": "framework",
        "baseline": f"{h * 1e3:.1f} ms (hand-written loop)",
        "candidate": f"{lt * 1e3:.1f} ms (Lightning + Classifier)",
        "ratio": ratio,
        "target": "<= 1.05",
        "case": f"time per training step; VGG-16-BN x0.25, {what}, batch {batch}, SGD one-cycle; {len(hand_s)} steps "
                f"interleaved step by step (medians; ratio: median of paired ratios), {torch.get_num_threads()} threads",
    }]
