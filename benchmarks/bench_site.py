"""The results site: wall time of ``python -m spatialprobe.report SWEEP -o SITE`` for a 150-run sweep, a fresh process
as a user runs it.

The sweep is written first, as training writes it (tests/fakeruns.py): the demo's network, 3 methods x K = 1..10 x
5 seeds = 150 runs, each with its ``result.json``, a 12-epoch ``logs/attempt-1/metrics.csv`` and checkpoints, and
the sweep's figure. The baseline, measured in the same run on the same records, is ``python -m spatialprobe.collect
SWEEP`` (reading every record into one table, which the site does too before it writes ~150 pages with their SVG
charts). Target: the site in under 10 s of wall time. Each side is the best of ``--repeats`` runs; the CPU seconds of
that run are shown too. ``--quick``: 20 runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 10.0


def timed(args: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of ``python args``."""
    before = os.times()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = os.times()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr[-500:]}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def run(args) -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    from fakeruns import synthetic_sweep

    quick = getattr(args, "quick", False)
    repeats = max(1, int(getattr(args, "repeats", 3)))
    ks, seeds = ((1, 2), (0, 1)) if quick else (tuple(range(1, 11)), tuple(range(5)))
    methods = ("spatial_shuffle", "channel_shuffle", "gap_fc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        sweep = synthetic_sweep(Path(tmp), "bench_site_sweep", methods=methods, ks=ks, seeds=seeds, baseline=False,
                                figures=True)
        n = len(list(sweep.rglob("result.json")))
        site, collect = [], []
        for _ in range(repeats):  # the two sides in turn: a change of load hits both
            collect.append(timed(["-m", "spatialprobe.collect", str(sweep), "-o", f"{tmp}/results.csv"], env))
            site.append(timed(["-m", "spatialprobe.report", str(sweep), "-o", f"{tmp}/site"], env))
        pages = len(list(Path(tmp, "site").rglob("*.html")))
    (cw, cc), (sw, sc) = min(collect), min(site)
    return [{
        "benchmark": "site",
        "case": f"python -m spatialprobe.report on a {n}-run sweep ({len(methods)} methods x {len(ks)} K x "
                f"{len(seeds)} seeds, 12-epoch metrics.csv each): {pages} pages; wall time, best of {repeats}",
        "baseline": f"{cw:.2f} s ({cc:.2f} s CPU): python -m spatialprobe.collect of the same records",
        "candidate": f"{sw:.2f} s ({sc:.2f} s CPU)",
        "ratio": round(sw / cw, 3), "target": f"< {TARGET_S:g} s", "ok": sw < TARGET_S,
    }]


if __name__ == "__main__":
    from common import main

    main(run)
