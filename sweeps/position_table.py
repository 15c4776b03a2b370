"""Print a grid-task sweep as the paper's Table 1: test accuracy per (network, padding, target) and grid size.

    python sweeps/position_table.py runs/sweeps/grid_cpu [runs/sweeps/grid_location ...] [--value test_top1]

The records are read by spatialprobe.report.collect (the same table `python -m spatialprobe.collect` writes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spatialprobe.report.collect import collect_dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dirs", type=Path, nargs="+")
    ap.add_argument("--value", default="test_top1", help="record field to tabulate (default: test_top1)")
    args = ap.parse_args()
    df = collect_dirs(args.sweep_dirs)
    if "config.dataset.kind" in df.columns:
        df = df[(df["record"] == "train") & (df["status"] == "complete") & (df["config.dataset.kind"] == "grid")]
    else:
        df = df.iloc[0:0]
    if df.empty:
        raise SystemExit(f"no complete grid-task records under {', '.join(map(str, args.sweep_dirs))}")
    padding = df["config.model.padding"].fillna("zeros") if "config.model.padding" in df.columns else "zeros"
    df = df.assign(padding=padding, grid=df["config.dataset.grid"].astype(int), target=df["config.dataset.target"])
    grids = sorted(df["grid"].unique())
    print("| network | padding | target | " + " | ".join(f"{g}x{g}" for g in grids) + " | minutes per run |")
    print("|---|---|---|" + "---|" * (len(grids) + 1))
    for (target, padding, name), rows in df.groupby(["target", "padding", "model"], sort=True):
        by_grid = {int(r.grid): r for r in rows.itertuples()}  # one run per grid size (the last one read)
        values = [getattr(by_grid[g], args.value) if g in by_grid else None for g in grids]
        minutes = " / ".join(f"{by_grid[g].wall_time_s / 60:.1f}" for g in grids if g in by_grid)
        print(f"| {name} | {padding} | {target} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in values)
              + f" | {minutes} |")
    for target in sorted(df["target"].unique()):
        chance = [100.0 / (g * g) if target == "location" else 10.0 for g in grids]
        print(f"| chance | | {target} | " + " | ".join(f"{c:.1f}" for c in chance) + " | |")


if __name__ == "__main__":
    main()
