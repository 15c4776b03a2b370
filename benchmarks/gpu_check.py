"""`make gpu-check`: the GPU path of the project end to end in one command: one table, also written to
benchmarks/results-gpu.md.

Rows (the benchmark row schema of benchmarks/run.py; ratio = candidate / baseline):

* ``throughput``: training images/s of VGG-16-BN and ResNet-50 on 32 px data (100 classes, batch
  256, the device-resident loader's batches, SGD), fp32 NCHW against bf16 autocast + channels_last
  and against the same + ``torch.compile``; model FLOP utilisation (MFU) = 3 x forward FLOPs per
  image x images/s / the GPU's bf16 peak (spatialprobe.config.gpus, or ``--peak-tflops``). Goal: ResNet-50
  >= 40% MFU in bf16.
* ``loader``: images/s of the device-resident loader on the GPU (crop + flip + normalise, batch 256),
  against the fastest training throughput measured above (it must feed the network many times over).
* ``shuffle``: the cost of spatial_shuffle on the GPU: ResNet-50 trained with the last 8 of 16
  units shuffled against the plain network (bf16 + channels_last), and the papers' unit shapes of
  benchmarks/bench_shuffle.py (forward + backward). Goal: <= 1.05x.
* ``cli``: ``python -m spatialprobe.train trainer=gpu`` for one epoch on CIFAR-shaped fake data with a
  spatially shuffled ResNet-18, and the same with ``trainer=ddp`` over every visible GPU: the run's
  record must be complete.

Without a CUDA device it prints one line and exits 0. ``--device cpu --tiny`` runs every row on the
CPU with tiny sizes (the test suite does, so that this script's code runs without a GPU; its
numbers mean nothing). A failing row is reported as such and the other rows still run; the exit
status is 1 when a row failed.

    python benchmarks/gpu_check.py [--quick] [--skip-compile] [--peak-tflops 989] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
NO_CUDA = "gpu-check: no CUDA device is visible (torch.cuda.is_available() is False); nothing to check"


class Setup:
    """Sizes and device of one check (full on a GPU, tiny on the CPU for tests)."""

    def __init__(self, args):
        import torch

        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        tiny = args.tiny
        self.batch = 8 if tiny else 256
        self.steps = 2 if tiny else (20 if args.quick else 50)
        self.warmup = 1 if tiny else 10
        self.width = 0.0625 if tiny else 1.0
        self.images = 64 if tiny else 50_000
        self.compile = not (args.skip_compile or tiny)
        if self.cuda:
            self.name = torch.cuda.get_device_name()
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            self.mixed = torch.bfloat16 if bf16 else torch.float16
        else:
            self.name = platform.processor() or platform.machine()
            self.mixed = torch.bfloat16
        from spatialprobe.config.gpus import peak_tflops

        self.peak = peak_tflops(self.name, "bf16", args.peak_tflops) if self.cuda else args.peak_tflops
        self.precision = "bf16" if self.mixed is torch.bfloat16 else "fp16"

    def sync(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()


def row(section: str, case: str, baseline: str = "", candidate: str = "", ratio=None, target: str = "",
        ok=None) -> dict:
    r = {"benchmark": section, "case": case, "baseline": baseline, "candidate": candidate, "ratio": ratio,
         "target": target}
    if ok is not None:
        r["ok"] = ok
    return r


# ----------------------------------------------------------------------------------------------- data
def batches(s: Setup, classes: int = 100):
    """The device-resident loader over CIFAR-shaped uint8 images on the device (real CIFAR-10 when present)."""
    import torch
    from common import cifar10

    from spatialprobe.data.loader import TensorBatches

    x, y, what = cifar10(s.images)
    y = y % classes
    loader = TensorBatches(torch.from_numpy(x).to(s.device), torch.from_numpy(y).to(s.device), s.batch,
                           (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), shuffle=True, augment=True,
                           drop_last=True, seed=0)
    return loader, what


def endless(loader):
    while True:
        yield from loader


# ----------------------------------------------------------------------------------------- throughput
def network(s: Setup, arch: str, method: str = "none", k: int = 0, classes: int = 100):
    import torch
    from common import compose_train

    from spatialprobe import surgery
    from spatialprobe.models import build_model

    name = {"vgg16_bn": "vgg16", "resnet50": "resnet50"}[arch]
    cfg = compose_train(f"model={name}", f"model.width={s.width}", f"method={method}", f"k={k}")
    torch.manual_seed(0)
    model = build_model(cfg.model, classes, 32)
    surgery.apply(model, cfg.method, k, 32)
    return model


def images_per_second(s: Setup, model, loader, mixed: bool, channels_last: bool, compile: bool) -> tuple[float, float]:
    """(images/s of training steps after a warm-up, seconds spent in the warm-up incl. compilation)."""
    import torch

    model = model.to(s.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()
    loader.channels_last = channels_last
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(s.device.type, enabled=mixed and s.mixed is torch.float16)
    it = endless(loader)
    t_start = time.perf_counter()
    for i in range(s.warmup + s.steps):
        if i == s.warmup:
            s.sync()
            t0 = time.perf_counter()
        x, y = next(it)
        with torch.autocast(s.device.type, dtype=s.mixed, enabled=mixed):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    s.sync()
    return s.steps * s.batch / (time.perf_counter() - t0), t0 - t_start


def mfu(s: Setup, flops: int, ips: float) -> str:
    if not s.peak:
        return "MFU: peak unknown (--peak-tflops)"
    return f"MFU {3 * flops * ips / (s.peak * 1e12):.1%}"


def throughput_rows(s: Setup, state: dict) -> list[dict]:
    from spatialprobe.run.measure import count_flops

    loader, what = batches(s)
    rows = []
    for arch in ("vgg16_bn", "resnet50"):
        flops = count_flops(network(s, arch), 32)
        base, _ = images_per_second(s, network(s, arch), loader, False, False, False)
        variants = [(f"{s.precision} autocast + channels_last", False)]
        if s.compile:
            variants.append((f"{s.precision} autocast + channels_last + torch.compile", True))
        for label, compiled in variants:
            ips, warm = images_per_second(s, network(s, arch), loader, True, True, compiled)
            state["best_ips"] = max(state.get("best_ips", 0.0), ips)
            util = mfu(s, flops, ips)
            rows.append(row(
                "throughput", f"{arch} training images/s, {label}; {s.name}, {what}, 32 px, 100 classes, batch "
                f"{s.batch}, {flops / 1e9:.2f} GFLOPs/image forward" + (f", compiling took {warm:.0f} s" if compiled else ""),
                f"{base:,.0f} (fp32 NCHW, {mfu(s, flops, base)})", f"{ips:,.0f} ({util})", ips / base))
            if arch == "resnet50" and s.peak and s.cuda:
                share = 3 * flops * ips / (s.peak * 1e12)
                rows.append(row("throughput", f"resnet50 MFU, {label} (goal on a current data-centre GPU: >= 40%)",
                                "", util, None, ">= 40% MFU", share >= 0.40))
    return rows


# --------------------------------------------------------------------------------------------- loader
def loader_rows(s: Setup, state: dict) -> list[dict]:
    loader, what = batches(s)
    for _ in loader:  # warm-up epoch
        break
    s.sync()
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += len(x)
    s.sync()
    ips = n / (time.perf_counter() - t0)
    best = state.get("best_ips")
    return [row("loader", f"device-resident loader on {s.name}: {n:,} CIFAR-shaped images ({what}), crop pad 4 + "
                          f"flip + normalise, batch {s.batch}; ratio: its images/s over the fastest training images/s",
                f"{best:,.0f} images/s (training)" if best else "", f"{ips:,.0f} images/s (loader)",
                ips / best if best else None, ">= 5" if best and s.cuda else "")]


# -------------------------------------------------------------------------------------------- shuffle
def _fwd_bwd_ms(s: Setup, module, x, reps: int) -> float:
    import torch

    times = []
    for i in range(reps + 2):
        xi = x.detach().requires_grad_(True)
        s.sync()
        t0 = time.perf_counter()
        with torch.autocast(s.device.type, dtype=s.mixed):
            out = module(xi)
        out.float().sum().backward()
        s.sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def shuffle_rows(s: Setup, state: dict) -> list[dict]:
    import torch
    from bench_shuffle import _shuffled, cases

    loader, what = batches(s)
    k = 8
    plain, _ = images_per_second(s, network(s, "resnet50"), loader, True, True, False)
    shuffled, _ = images_per_second(s, network(s, "resnet50", "spatial_shuffle", k), loader, True, True, False)
    rows = [row("shuffle", f"resnet50 training step, last {k} of 16 units spatially shuffled vs plain; {s.name}, "
                           f"{s.precision} + channels_last, batch {s.batch}",
                f"{plain:,.0f} images/s (plain)", f"{shuffled:,.0f} images/s (spatial_shuffle k={k})", plain / shuffled,
                "<= 1.05" if s.cuda else "")]
    reps = 3 if s.args.tiny else 20
    for name, unit, family, x in cases(quick=s.args.tiny):
        if s.args.tiny:
            x = x[:2]
        unit = unit.to(s.device).to(memory_format=torch.channels_last)
        shuffled_unit = _shuffled(unit, family).to(s.device)
        x = x.to(s.device).contiguous(memory_format=torch.channels_last)
        a, b = [], []
        for _ in range(2):  # alternate, so drift hits both sides alike
            a.append(_fwd_bwd_ms(s, unit, x, reps))
            b.append(_fwd_bwd_ms(s, shuffled_unit, x, reps))
        base, cand = min(a), min(b)
        rows.append(row("shuffle", f"{name}, batch {x.shape[0]}, fwd+bwd, {s.precision} + channels_last, {s.name}",
                        f"{base:.2f} ms (plain unit)", f"{cand:.2f} ms (spatial_shuffle)", cand / base,
                        "<= 1.05" if s.cuda else ""))
    return rows


# ------------------------------------------------------------------------------------------------ cli
def cli_run(s: Setup, tmp: Path, name: str, extra: list[str]) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from fakedata import make_cifar_batches

    data = tmp / "cifar10"
    if not data.exists():  # CIFAR-shaped: 5 x per_batch training images, 2,000 (or 64) test images
        make_cifar_batches(data, "cifar10", per_batch=16 if s.args.tiny else 2000, test=64 if s.args.tiny else 2000)
    run_dir = tmp / name
    args = [sys.executable, "-m", "spatialprobe.train", "dataset=cifar10", f"dataset.root={data}", "dataset.verify=false",
            "dataset.download=false", "model=resnet18", "method=spatial_shuffle", "k=3", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *extra]
    if s.args.tiny:
        args += ["model.width=0.0625", "recipe.batch_size=16"]
    env = dict(os.environ, SPATIALPROBE_CACHE=str(tmp / "cache"), WANDB_MODE="offline")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    p = subprocess.run(args, env=env, cwd=tmp, capture_output=True, text=True, timeout=s.args.cli_timeout)
    wall = time.perf_counter() - t0
    rec = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").is_file() else {}
    ok = p.returncode == 0 and rec.get("status") == "complete"
    if ok:
        what = (f"complete in {wall:.0f} s wall ({rec.get('train_time_s')} s in the run): {rec.get('steps')} steps, "
                f"precision {rec['config']['trainer']['precision']}, test top-1 {rec.get('test_top1')}% (random data)")
    else:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        what = f"exit {p.returncode}, status {rec.get('status')}: {' / '.join(tail)[:400]}"
    return row("cli", f"python -m spatialprobe.train {' '.join(extra)} model=resnet18 method=spatial_shuffle k=3, "
                      f"1 epoch, CIFAR-shaped fake data", "", what, None, "", ok)


def cli_rows(s: Setup, state: dict) -> list[dict]:
    import torch

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        if s.cuda:
            n = torch.cuda.device_count()
            runs = [("gpu", ["trainer=gpu"]), ("ddp", ["trainer=ddp", f"trainer.devices={n}"])]
        else:  # the same code paths on the CPU: one process, and DDP with one process
            runs = [("gpu", ["trainer=cpu"]), ("ddp", ["trainer=cpu", "trainer.strategy=ddp", "trainer.devices=1"])]
        return [cli_run(s, tmp, name, extra) for name, extra in runs]


SECTIONS = {"throughput": throughput_rows, "loader": loader_rows, "shuffle": shuffle_rows, "cli": cli_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: the dry path, for tests")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (with --device cpu: a test of this script)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak (default: spatialprobe/gpus.py by device name)")
    parser.add_argument("--cli-timeout", type=int, default=300, help="seconds for each CLI run")
    parser.add_argument("--out", default=str(HERE / "results-gpu.md"), help="markdown file for the table ('' = none)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)} (valid: {', '.join(SECTIONS)})")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    from run import table

    s, state, rows = Setup(args), {}, []
    for name in names:
        t0 = time.time()
        print(f"# {name} ...", flush=True)
        try:
            rows += SECTIONS[name](s, state)
        except Exception as err:  # one broken part must not hide the others
            traceback.print_exc()
            rows.append(row(name, f"{name}: failed: {type(err).__name__}: {err}"[:500], ok=False))
        print(f"# {name}: {time.time() - t0:.0f} s", flush=True)
    gpus = f"{torch.cuda.device_count()} x {s.name}" if s.cuda else f"CPU ({s.name}), --tiny: not a measurement"
    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, torch {torch.__version__}, {gpus}, "
              f"bf16 peak {s.peak or 'unknown'} TFLOP/s")
    text = f"{header}\n\n{table(rows)}\n"
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(f"# make gpu-check\n\n{text}")
    return 1 if any(r.get("ok") is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
