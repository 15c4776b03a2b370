"""Print a grid-task sweep as the paper's Table 1: test accuracy per (network, padding, target) and grid size.

    python sweeps/position_table.py runs/position_cpu [runs/position_table1/location ...] [--value test_top1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dirs", type=Path, nargs="+")
    ap.add_argument("--value", default="test_top1", help="record field to tabulate (default: test_top1)")
    args = ap.parse_args()
    cells: dict[tuple[str, str, str], dict[int, dict]] = {}
    for sweep in args.sweep_dirs:
        for path in sorted(sweep.rglob("result.json")):
            rec = json.loads(path.read_text())
            if rec.get("status") != "complete" or rec["config"]["dataset"].get("kind") != "grid":
                continue
            ds, model = rec["config"]["dataset"], rec["config"]["model"]
            row = (rec["model"], model.get("padding") or "zeros", ds["target"])
            cells.setdefault(row, {})[int(ds["grid"])] = rec
    if not cells:
        raise SystemExit(f"no complete grid-task records under {', '.join(map(str, args.sweep_dirs))}")
    grids = sorted({g for row in cells.values() for g in row})
    print("| network | padding | target | " + " | ".join(f"{g}x{g}" for g in grids) + " | minutes per run |")
    print("|---|---|---|" + "---|" * (len(grids) + 1))
    for (name, padding, target), by_grid in sorted(cells.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        values = [by_grid.get(g, {}).get(args.value) for g in grids]
        minutes = " / ".join(f"{by_grid[g]['wall_time_s'] / 60:.1f}" for g in grids if g in by_grid)
        print(f"| {name} | {padding} | {target} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in values)
              + f" | {minutes} |")
    for target in sorted({t for _, _, t in cells}):
        chance = [100.0 / (g * g) if target == "location" else 10.0 for g in grids]
        print(f"| chance | | {target} | " + " | ".join(f"{c:.1f}" for c in chance) + " | |")


if __name__ == "__main__":
    main()
