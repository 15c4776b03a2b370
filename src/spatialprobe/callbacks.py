"""Lightning callbacks of our own (everything else comes from Lightning)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


def derived_seed(seed: int, *parts: int) -> int:
    value = int(seed) & 0xFFFFFFFF
    for p in parts:
        value = (value * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return value


class SeedSchedule(pl.Callback):
    """Derive all randomness from the run seed and the position in training.

    The global RNG (dropout, stochastic methods such as shuffles) is re-seeded from
    ``(seed, global_step)`` before every training step, and from the evaluation seed before every
    validation / test epoch. A run resumed from any checkpoint therefore draws exactly the numbers
    an uninterrupted run would, and evaluation never reuses the training seed.
    """

    def __init__(self, seed: int, eval_seed: int):
        self.seed, self.eval_seed = int(seed), int(eval_seed)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.manual_seed(derived_seed(self.seed, 0, trainer.global_step))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        torch.manual_seed(derived_seed(self.eval_seed, 1, trainer.current_epoch))

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        torch.manual_seed(derived_seed(self.eval_seed, 2))
