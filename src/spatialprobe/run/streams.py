"""Every random stream of a run, named by ``(seed, purpose, epoch, batch)``.

A stream is a torch generator (or the global RNG, re-seeded) started from the 64-bit seed

    stream_seed = hi << 32 | lo
    lo = mix_key((purpose << 28) + epoch * batches + batch)     (32 bits)

``key`` and ``hi`` come from ``numpy.random.SeedSequence(seed)`` (cached per run seed); ``batches``
is the number of batches per epoch of the purpose (1 for purposes without batches), so
``epoch * batches + batch`` counts the stream's position in training.

Why the low 32 bits are not simply hashed: torch's CPU generator (mt19937) keeps only the low 32
bits of its seed (``manual_seed(s)`` and ``manual_seed(s + 2**32)`` draw the same numbers; a test
pins this). With 32 hashed bits, two of the 10,009 batches of one Small-ImageNet epoch share a
stream with probability ~1.2 %, and a 90-epoch run has ~94 such pairs (birthday bound). So ``lo``
is a bijection of the position instead, and the proof that no two streams of a run coincide is:

* ``(purpose, position) -> (purpose << 28) + position`` is injective for ``purpose < 16`` and
  ``position < 2**28`` (268 million batches; more is refused);
* ``mix_key`` is a bijection of the 32-bit words: adding ``key`` mod 2**32, ``x ^= x >> s`` and
  multiplying by an odd constant mod 2**32 are each invertible;
* so for one run seed, distinct keys give distinct ``lo``: distinct CPU streams, and distinct
  64-bit seeds for CUDA's Philox generator (which uses all 64 bits).

Streams of different run seeds share no structure: ``key`` scrambles the order in which each seed
visits the 32-bit words (no shifted copies, unlike a seed plus a counter), and ``hi`` differs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

# Never reorder: a purpose's number is part of every stream of that purpose (resume stays exact).
PURPOSES = (
    "train_step",  # global RNG before each training batch (dropout, shuffles): epoch, batch of the epoch
    "val",         # global RNG before each validation epoch
    "test",        # global RNG before each test epoch
    "final_test",  # global RNG before train.py's final test call
    "eval_pass",   # global RNG before each pass of spatialprobe.evaluate (epoch = pass)
    "consistency",  # the shift pairs of Cons.S
    "order",       # the permutation of the training images of an epoch
    "augment",     # crop and flip of one training batch
    "cells",       # grid task: the cells drawn for the images of an epoch (batch = rank)
    "placement",   # grid task: the fixed evaluation cells (batch = split: 0 test, 1 val)
    "augment_view2",  # crop and flip of the second view of a training batch (task=augshift)
)
_ID = {name: i for i, name in enumerate(PURPOSES)}
POSITION_BITS = 28
MASK32 = 0xFFFFFFFF
assert len(PURPOSES) <= 2 ** (32 - POSITION_BITS)


@lru_cache(maxsize=64)
def _seed_words(seed: int) -> tuple[int, int]:
    """(key, hi): two 32-bit words of the run seed's SeedSequence."""
    key, hi = np.random.SeedSequence(int(seed) % 2**64).generate_state(2, np.uint32)
    return int(key), int(hi)


def mix(x, key: int):
    """A bijection of the 32-bit words (``x`` an int or a uint64 array of values < 2**32), keyed by ``key``.

    Each step is invertible mod 2**32 (an odd multiplier has an inverse; ``x ^= x >> s`` is undone
    by repeating it). The multipliers are Chris Wellons' "lowbias32" constants (good avalanche).
    """
    x = (x + key) & MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    x ^= x >> 16
    return x


def stream_seed(seed: int, purpose: str, epoch: int = 0, batch: int = 0, batches: int = 1) -> int:
    """The 64-bit seed of stream ``(seed, purpose, epoch, batch)``; ``batch < batches`` (per epoch)."""
    if not 0 <= batch < batches:
        raise ValueError(f"batch {batch} is outside 0..{batches - 1}")
    position = int(epoch) * int(batches) + int(batch)
    if not 0 <= position < 2**POSITION_BITS:
        raise ValueError(f"stream position {position} (epoch {epoch}, batch {batch}) is outside 0..2**28-1")
    key, hi = _seed_words(seed)
    return hi << 32 | mix((_ID[purpose] << POSITION_BITS) + position, key)


def generator(seed: int, purpose: str, epoch: int = 0, batch: int = 0, batches: int = 1) -> torch.Generator:
    """A CPU generator on stream ``(seed, purpose, epoch, batch)``."""
    return torch.Generator().manual_seed(stream_seed(seed, purpose, epoch, batch, batches))


def seed_global(seed: int, purpose: str, epoch: int = 0, batch: int = 0, batches: int = 1) -> None:
    """Put torch's global RNG (CPU, and every CUDA device once CUDA is in use) on a stream.

    Cheaper than ``torch.manual_seed``, which records a stack trace per call while CUDA is not
    initialised (~0.3 ms, every training step of a CPU run).
    """
    s = stream_seed(seed, purpose, epoch, batch, batches)
    torch.default_generator.manual_seed(s)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(s)
