"""Gather the result records of sweeps into one table (CSV), one row per run (the library:
:mod:`spatialprobe.report.collect`, whose docstring lists the columns).

    python -m spatialprobe.collect runs/sweeps/vgg16_cifar100_kcurve [more dirs...] [-o results.csv]
    python -m spatialprobe.collect --wandb ENTITY/PROJECT [--group SWEEP] -o results.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

from spatialprobe.config.cli import ArgumentParser
from spatialprobe.errors import UserError, reported
from spatialprobe.report.collect import EXAMPLE, collect_dirs, collect_wandb


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m spatialprobe.collect", description=__doc__.split("\n\n")[0],
                            example=EXAMPLE)
    parser.add_argument("dirs", nargs="*", help="sweep (or run) directories to search for records")
    parser.add_argument("-o", "--output", help="CSV to write (default: DIR/results.csv for one DIR, else ./results.csv)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs of this W&B project instead")
    parser.add_argument("--group", help="with --wandb: only the runs of this group (sweep)")
    args = parser.parse_args(argv)
    with reported():
        if bool(args.dirs) == bool(args.wandb):
            raise UserError(f"give sweep directories or --wandb ENTITY/PROJECT (one of the two); e.g. {EXAMPLE}")
        df = collect_wandb(args.wandb, args.group) if args.wandb else collect_dirs(args.dirs)
        out = Path(args.output) if args.output else (
            Path(args.dirs[0]) / "results.csv" if len(args.dirs) == 1 else Path("results.csv"))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(out, index=False)
        except OSError as err:
            raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    counts = df.groupby("record")["status"].value_counts().to_dict()
    summary = ", ".join(f"{n} {rec} {status}" for (rec, status), n in sorted(counts.items()))
    print(f"{len(df)} rows ({summary}) -> {out}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
