"""Print AugShift / BlurPool sweeps as P's Table 2: top-1 and shift consistency per data set, one row per method.

    python sweeps/table2.py runs/sweeps/resnet18_cifar100_augshift [more sweep dirs ...] [--paper]

Rows: the baseline (task=classify, no blur), +AugShift (task=augshift), BlurPool (task=classify with
model.blurpool; ``pool`` = P's description, ``full`` = Zhang's anti-aliasing); AugShift on a BlurPool
network, if present, gets its own row. Columns: the paper's (Top-1, Cons.8; ImageNet also Cons.16), then
any other Cons.S the records hold. ``--paper`` adds P's numbers (from spatialprobe/report/papers/p.yaml). Records are read by spatialprobe.report.collect.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from spatialprobe.report import papers
from spatialprobe.report.collect import collect_dirs

DATASETS = {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}  # P's column order
ROWS = {("classify", "none"): "ResNet-18", ("augshift", "none"): "+AugShift",
        ("classify", "pool"): "BlurPool (blur after max-pools)", ("classify", "full"): "BlurPool (full)",
        ("augshift", "pool"): "+AugShift, BlurPool (pool)", ("augshift", "full"): "+AugShift, BlurPool (full)"}


def paper_table() -> dict[str, dict[tuple[str, str], object]]:
    """P's Table 2 from its numbers file (spatialprobe/report/papers/p.yaml): row -> (dataset, field) -> entry."""
    out: dict[str, dict[tuple[str, str], object]] = {}
    for e in papers.entries("P"):
        if e.item == "Table 2":
            out.setdefault(e.row, {})[(e.select["dataset"], e.metric)] = e
    return out


def paper_shifts() -> dict[str, list[int]]:
    """The shifts S of P's Cons.S columns per data set (CIFAR: 8; ImageNet: 8, 16), read from its numbers file."""
    shifts: dict[str, set[int]] = {}
    for numbers in paper_table().values():
        for dataset, field in numbers:
            if field.startswith("test_cons"):
                shifts.setdefault(dataset, set()).add(int(field[len("test_cons"):]))
    return {d: sorted(s) for d, s in shifts.items()}


def blur_mode(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value in (False, "False", "false"):
        return "none"
    return "pool" if value in (True, "True", "true") else str(value)


def table(dirs: list[Path]) -> tuple[list[str], list[list[str]], list[tuple[str, str, str]]]:
    df = collect_dirs(dirs)
    df = df[(df["record"] == "train") & (df["status"] == "complete")]
    if df.empty:
        raise SystemExit(f"no complete runs under {', '.join(map(str, dirs))}")
    blur = df["config.model.blurpool"] if "config.model.blurpool" in df.columns else None
    df = df.assign(row=[ROWS.get((t if isinstance(t, str) else "classify", blur_mode(b)), f"{t} / blurpool={b}")
                        for t, b in zip(df.get("task", ["classify"] * len(df)),
                                        blur if blur is not None else [None] * len(df), strict=True)])
    datasets = [d for d in DATASETS if d in set(df["dataset"])] + sorted(set(df["dataset"]) - set(DATASETS))
    columns = []  # (dataset, record field, header)
    paper = paper_shifts()
    for d in datasets:
        present = sorted(int(c[len("test_cons"):]) for c in df.columns
                         if c.startswith("test_cons") and c[len("test_cons"):].isdigit()
                         and df.loc[df["dataset"] == d, c].notna().any())
        shifts = paper.get(d, []) + [s for s in present if s not in paper.get(d, [])]
        name = DATASETS.get(d, d)
        columns += [(d, "test_top1", f"{name} Top-1")] + [(d, f"test_cons{s}", f"{name} Cons.{s}") for s in shifts]
    order = list(dict.fromkeys([r for r in ROWS.values() if r in set(df["row"])] + sorted(set(df["row"]))))
    rows = []
    for label in order:
        cells = []
        for d, field, _ in columns:
            runs = df[(df["row"] == label) & (df["dataset"] == d)]
            values = runs[field].dropna() if field in runs.columns else []
            cells.append("-" if len(values) == 0 else f"{values.mean():.1f}" + (f" (n={len(values)})" if len(values) > 1 else ""))
        rows.append([label, *cells])
    return ["Methods", *[c[2] for c in columns]], rows, columns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dirs", type=Path, nargs="+")
    ap.add_argument("--paper", action="store_true", help="add P's Table 2 numbers as rows")
    args = ap.parse_args()
    dirs = [d for d in args.sweep_dirs if d.is_dir()]
    if not dirs:
        raise SystemExit(f"none of these sweep directories exists: {', '.join(map(str, args.sweep_dirs))}")
    header, rows, columns = table(dirs)
    if args.paper:
        for label, numbers in paper_table().items():
            cells = [numbers[(d, field)].text() if (d, field) in numbers else "" for d, field, _ in columns]
            rows.append([f"P: {label}", *cells])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
