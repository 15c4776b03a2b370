"""`make bench`: run the benchmarks of this folder, each against its baseline in the same run.

A benchmark is a module ``benchmarks/bench_<name>.py`` exposing

    def run(args) -> list[dict]

that measures a candidate and its baseline in the same process and returns one row per
measurement with the keys ``benchmark`` (its name), ``case`` (what was measured, on what data),
``baseline``, ``candidate`` (human-readable values), ``ratio`` (candidate / baseline, a float or
None), ``target`` (``">= 10"``, ``"<= 1.05"`` or ``""``) and optionally ``ok`` (computed from
ratio and target when absent). The dispatcher prints every row as one markdown table and writes
it to ``benchmarks/results.md``.

    python benchmarks/run.py                    # everything
    python benchmarks/run.py --only loader      # one benchmark (comma-separated names)
    python benchmarks/run.py --quick            # tiny sizes: a smoke run of every benchmark, not a measurement
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
COLUMNS = ("benchmark", "case", "baseline", "candidate", "ratio", "target", "ok")


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def meets(ratio: float | None, target: str) -> bool | None:
    """Whether ``ratio`` satisfies ``target`` (">= 10", "<= 1.05"; a trailing x is allowed)."""
    if ratio is None or not target:
        return None
    op, value = target.split()
    bound = float(value.rstrip("x"))
    return ratio >= bound if op == ">=" else ratio <= bound


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        ok = row["ok"] if "ok" in row else meets(row.get("ratio"), row.get("target", ""))
        ratio = row.get("ratio")
        row = row | {"ok": {True: "yes", False: "**no**", None: ""}[ok],
                     "ratio": f"{ratio:.2f}x" if isinstance(ratio, int | float) else ""}
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines)


#: the instruction sets the CPU rows depend on (fp32 kernels, bf16 autocast)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model, cores and which of :data:`CPU_FLAGS` it has, e.g. "AMD EPYC, 2 cores, avx2 (no
    avx512f, avx512_bf16, amx_bf16)"."""
    import os

    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    has = [f for f in CPU_FLAGS if f in flags]
    lacks = [f for f in CPU_FLAGS if f not in flags]
    return (f"{model}, {os.cpu_count()} cores, {' '.join(has) or 'none of ' + '/'.join(CPU_FLAGS)}"
            + (f" (no {', '.join(lacks)})" if lacks and has else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(available())}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every benchmark (seconds), not a measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measure each side this often, keep the best")
    parser.add_argument("--out", default=str(HERE / "results.md"), help="markdown file for the table ('' = none)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (valid: {', '.join(available())})")
    import torch

    rows: list[dict] = []
    for name in names:
        t0 = time.time()
        print(f"# {name} ...", flush=True)
        rows += importlib.import_module(f"bench_{name}").run(args)
        print(f"# {name}: {time.time() - t0:.0f} s", flush=True)
    cpu = cpu_description()
    print(f"# CPU: {cpu}", flush=True)
    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, CPU {cpu}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}"
              f"{', quick' if args.quick else ''}")
    text = f"{header}\n\n{table(rows)}\n"
    print("\n" + text)
    if args.out:
        options = " ".join(([f"--only {args.only}"] if args.only else []) + (["--quick"] if args.quick else []))
        Path(args.out).write_text(f"# make bench{f' ARGS={options!r}' if options else ''}\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
