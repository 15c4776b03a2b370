"""CPU training step: bf16 autocast, channels_last, both, oneDNN off, torch.compile against fp32 NCHW; the thread layout.

The network is the demo's (``experiment=demo_cifar10_kcurve``: VGG-16-BN x0.25, 256-wide
classifier, the ``cpu`` recipe's SGD), on real CIFAR-10 batches of 128 from the device-resident
loader. One training step is what Lightning runs: forward and loss under autocast (when bf16),
backward, optimiser step. Every variant is a copy of the same initial network; the variants take
one step each in turn, round after round, in this process, with one thread (the layout the demo's
sweep uses; see the last row), and each step is timed in CPU time of the process, which load
from other processes does not inflate. The ratio is the median over rounds of variant / fp32
NCHW. ``torch.compile`` is measured after its compilation (whose time is reported: it is paid
again by every run and for every new graph, e.g. evaluation).

Thread layout: a sweep on a 2-core machine can run one job with 2 threads or two jobs side by
side with 1 thread each (``hydra/launcher=local hydra.launcher.max_parallel=2``,
``OMP_NUM_THREADS=1``). Two worker processes hold the network (bf16 + channels_last); in turn,
one of them trains alone with 2 threads, then both train at once with 1 thread each. The ratio is
the median over rounds of (wall time per image, side by side) / (wall time per image, alone).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import statistics
import time

import torch
from common import cifar10, compose_train

from spatialprobe import surgery
from spatialprobe.config.resolvers import BF16_CPU_FLAGS, cpu_has_bf16
from spatialprobe.data.loader import TensorBatches
from spatialprobe.models import build_model
from spatialprobe.tasks.base import build_optimizer

BATCH = 128
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
DEMO = ("experiment=demo_cifar10_kcurve",)


def demo_network(*overrides: str) -> tuple[torch.nn.Module, dict]:
    cfg = compose_train(*DEMO, *overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, 10, 32)
    surgery.apply(model, cfg.method, int(cfg.k), 32)
    return model, dict(cfg.recipe)


class Variant:
    """One copy of the network with its speed options, its optimiser and its batches."""

    def __init__(self, name: str, model: torch.nn.Module, recipe: dict, batches: list, *, bf16: bool = False,
                 channels_last: bool = False, compile: bool = False, onednn: bool = True):
        self.name, self.bf16, self.onednn = name, bf16, onednn
        self.model = copy.deepcopy(model).train()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=fmt)
        self.opt = build_optimizer(self.model.parameters(), recipe)
        self.batches = [(x.contiguous(memory_format=fmt), y) for x, y in batches]
        self.i, self.compile_s = 0, None
        if compile:
            t0 = time.perf_counter()
            self.model.compile()
            self.step()  # the first call compiles forward and backward
            self.compile_s = time.perf_counter() - t0

    def step(self) -> float:
        """One training step; its CPU time (s)."""
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        onednn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = self.onednn  # (its flags() context also sets TF32 and warns about it)
        t0 = time.process_time()
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                loss = torch.nn.functional.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        finally:
            torch.backends.mkldnn.enabled = onednn
        return time.process_time() - t0


def real_batches(n: int) -> tuple[list, str]:
    x, y, what = cifar10(BATCH * n)
    loader = TensorBatches(torch.from_numpy(x), torch.from_numpy(y), BATCH, MEAN, STD, shuffle=True, augment=True,
                           drop_last=True, seed=0)
    return list(loader), what


def interleaved(variants: list[Variant], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(warmup + rounds):
        for v in variants:
            t = v.step()
            if r >= warmup:
                times[v.name].append(t)
    return times


def precision_rows(args) -> list[dict]:
    rounds = 6 if args.quick else 20
    bf16 = cpu_has_bf16()
    batches, what = real_batches(8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for label, overrides in (("baseline network (k=0)", ()),
                                 ("spatial_shuffle k=6", ("method=spatial_shuffle", "k=6"))):
            model, recipe = demo_network(*overrides)
            variants = [Variant("fp32 NCHW", model, recipe, batches),
                        Variant("channels_last", model, recipe, batches, channels_last=True),
                        Variant("oneDNN off (ATen's own fp32 convolutions)", model, recipe, batches, onednn=False)]
            if bf16:
                variants += [Variant("bf16 autocast", model, recipe, batches, bf16=True),
                             Variant("bf16 autocast + channels_last", model, recipe, batches, bf16=True,
                                     channels_last=True)]
            if not overrides and not args.quick:
                variants += [Variant("torch.compile", model, recipe, batches, compile=True)]
                if bf16:
                    variants += [Variant("bf16 + channels_last + torch.compile", model, recipe, batches, bf16=True,
                                         channels_last=True, compile=True)]
            times = interleaved(variants, rounds)
            base = times["fp32 NCHW"]
            if not bf16:
                rows += [{"benchmark": "cpu", "case": f"{name}: demo network ({label}): not applicable on this CPU "
                          f"(no {' / '.join(BF16_CPU_FLAGS)}: bf16 is emulated, 10-25x slower than fp32)",
                          "baseline": "", "candidate": "", "ratio": None, "target": ""}
                         for name in ("bf16 autocast", "bf16 autocast + channels_last")]
            for v in variants[1:]:
                if overrides and v.name not in ("bf16 autocast + channels_last", "channels_last"):
                    continue
                t = times[v.name]
                ratio = statistics.median(a / b for a, b in zip(t, base, strict=True))
                compiled = f"; compiling took {v.compile_s:.0f} s wall" if v.compile_s else ""
                rows.append({
                    "benchmark": "cpu",
                    "case": f"{v.name}: CPU time per training step; demo network ({label}), VGG-16-BN x0.25, {what}, "
                            f"batch {BATCH}, SGD; {rounds} rounds interleaved, 1 thread{compiled}",
                    "baseline": f"{statistics.median(base) * 1e3:.0f} ms (fp32 NCHW)",
                    "candidate": f"{statistics.median(t) * 1e3:.0f} ms",
                    "ratio": ratio,
                    "target": "<= 0.70" if v.name == "bf16 autocast + channels_last" else "",
                })
    finally:
        torch.set_num_threads(threads)
    return rows


def _worker(conn) -> None:
    """A process holding the demo network (bf16 + channels_last), training on command."""
    batches, _ = real_batches(4)
    model, recipe = demo_network()
    v = Variant("trainer=cpu's speed options", model, recipe, batches, bf16=cpu_has_bf16(), channels_last=True)
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        steps, threads = msg
        torch.set_num_threads(threads)
        for _ in range(steps):
            v.step()
        conn.send("done")


def layout_row(args) -> dict:
    """One job with 2 threads vs two jobs side by side with 1 thread each (wall time per image)."""
    rounds, steps = (3, 3) if args.quick else (5, 5)
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(2):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child,), daemon=True)
        p.start()
        pipes.append(parent)
        procs.append(p)
    try:
        for c in pipes:
            assert c.recv() == "ready"

        def timed(conns: list, threads: int) -> float:
            t0 = time.perf_counter()
            for c in conns:
                c.send((steps, threads))
            for c in conns:
                c.recv()
            return time.perf_counter() - t0

        timed(pipes, 1)  # warm-up of both
        timed(pipes[:1], 2)
        alone, side = [], []
        for _ in range(rounds):
            alone.append(timed(pipes[:1], 2) / steps)
            side.append(timed(pipes, 1) / (2 * steps))
    finally:
        for c in pipes:
            c.send(None)
        for p in procs:
            p.join(timeout=30)
    ratio = statistics.median(b / a for a, b in zip(alone, side, strict=True))
    return {
        "benchmark": "cpu",
        "case": f"thread layout of a sweep: wall time per training batch (2 jobs: half their round's time), demo network in "
                f"{'bf16' if cpu_has_bf16() else 'fp32'} + channels_last, "
                f"batch {BATCH}; {rounds} rounds of {steps} steps, the two layouts in turn",
        "baseline": f"{statistics.median(alone) * 1e3:.0f} ms per batch (1 job, 2 threads)",
        "candidate": f"{statistics.median(side) * 1e3:.0f} ms per batch (2 jobs side by side, 1 thread each)",
        "ratio": ratio,
        "target": "<= 1",
    }


def run(args) -> list[dict]:
    return [*precision_rows(args), layout_row(args)]
