"""Cost of the random streams (spatialprobe.run.streams) per training step and per batch.

Baseline: what the project did before, re-created here: a hand-written seed mixer, then
``torch.manual_seed`` for the global RNG (every training step) and ``torch.Generator().manual_seed``
for a batch's augmentation. Candidate: ``streams.seed_global`` and ``streams.generator``, the same
calls SeedSchedule and the loaders make. Both sides alternate in the same process; best of
``repeats`` rounds of N calls each.
"""

from __future__ import annotations

import time

import torch

from spatialprobe.run import streams

BATCHES = 10_009  # Small-ImageNet's batches per epoch


def old_mixer(seed: int, *parts: int) -> int:
    value = int(seed) & 0xFFFFFFFF
    for p in parts:
        value = (value * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return value


def _per_call(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n


def _compare(base, cand, n: int, repeats: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        a.append(_per_call(base, n))
        b.append(_per_call(cand, n))
    return min(a), min(b)


def run(args) -> list[dict]:
    n = 2_000 if getattr(args, "quick", False) else 20_000
    repeats = max(3, int(getattr(args, "repeats", 3)))
    step_old, step_new = _compare(lambda i: torch.manual_seed(old_mixer(0, 0, i)),
                                  lambda i: streams.seed_global(0, "train_step", i // BATCHES, i % BATCHES, BATCHES),
                                  n, repeats)
    key_old, key_new = _compare(lambda i: old_mixer(0, 0, i),
                                lambda i: streams.stream_seed(0, "train_step", i // BATCHES, i % BATCHES, BATCHES),
                                n, repeats)
    gen_old, gen_new = _compare(lambda i: torch.Generator().manual_seed(old_mixer(0, 3, 1 + i)),
                                lambda i: streams.generator(0, "augment", 3, i % BATCHES, BATCHES), n, repeats)
    cuda = "CUDA initialised" if torch.cuda.is_initialized() else "CPU run (CUDA not initialised)"
    return [
        {"benchmark": "streams", "case": f"derive a training step's seed only; {n:,} calls",
         "baseline": f"{key_old * 1e6:.2f} us (mixer)", "candidate": f"{key_new * 1e6:.2f} us (streams.stream_seed)",
         "ratio": round(key_new / key_old, 3), "target": ""},
        {"benchmark": "streams", "case": f"seed the global RNG before a training step; {cuda}; {n:,} calls",
         "baseline": f"{step_old * 1e6:.1f} us (mixer + torch.manual_seed)",
         "candidate": f"{step_new * 1e6:.1f} us (streams.seed_global)", "ratio": round(step_new / step_old, 3),
         "target": "<= 1.05"},
        {"benchmark": "streams", "case": f"a batch's augmentation generator (ok: at most 10 us more per batch); {n:,} calls",
         "baseline": f"{gen_old * 1e6:.1f} us (mixer + torch.Generator)",
         "candidate": f"{gen_new * 1e6:.1f} us (streams.generator)", "ratio": round(gen_new / gen_old, 3),
         "target": "", "ok": gen_new - gen_old <= 10e-6},  # against ~1 ms of loader work per batch
    ]


if __name__ == "__main__":
    from common import main

    main(run)
