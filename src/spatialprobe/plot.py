"""The papers' figures and tables from a collected table (the library: :mod:`spatialprobe.report.figures`).

    python -m spatialprobe.plot runs/sweeps/vgg16_cifar100_kcurve/results.csv [-o DIR] [--tolerance 1.0] [--curves]
    python -m spatialprobe.plot results.csv --wandb        # also log every figure and table to one W&B run
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spatialprobe.config.cli import ArgumentParser
from spatialprobe.errors import UserError, reported
from spatialprobe.report.figures import MAX_CURVES, load_table, make_all


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m spatialprobe.plot", description=__doc__.split("\n\n")[0],
                            example="python -m spatialprobe.plot runs/sweeps/<experiment>/results.csv")
    parser.add_argument("table", help="CSV written by python -m spatialprobe.collect")
    parser.add_argument("-o", "--outdir", help="where figures and tables go (default: figures/ beside the table)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="points below the baseline still counted "
                        "as 'within' for the compressed table (default 1.0)")
    parser.add_argument("--metric", default="test_top1", help="accuracy column to plot (default test_top1)")
    parser.add_argument("--curves", action="store_true", help=f"draw the training curves of every model and data "
                        f"set, also those with more than {MAX_CURVES} runs")
    wb = parser.add_argument_group("W&B", "--wandb also logs everything written as one 'figures' run; by default "
                                   "into the project, entity, group (the sweep) and mode of the table's runs")
    wb.add_argument("--wandb", action="store_true", help="log the figures, charts and tables to W&B")
    wb.add_argument("--project", help="W&B project (default: the runs' logger.project, else spatialprobe)")
    wb.add_argument("--entity", help="W&B entity (default: the runs' logger.entity)")
    wb.add_argument("--group", help="W&B group (default: the runs' group: their sweep)")
    wb.add_argument("--wandb-mode", help="offline | online | disabled (default: the runs' logger.mode, else "
                    "$WANDB_MODE, else offline)")
    args = parser.parse_args(argv)
    with reported():
        if args.tolerance < 0:
            raise UserError(f"--tolerance={args.tolerance} is invalid: must be >= 0")
        outdir = Path(args.outdir) if args.outdir else Path(args.table).parent / "figures"
        destination = wandb_destination(args, outdir) if args.wandb else None  # checked before anything is written
        written = make_all(args.table, outdir, args.tolerance, args.metric, curves=args.curves)
    for path in written:
        print(path)
    for path in written:
        if path.name.startswith("kcurve_") and path.suffix == ".png":
            print(f"K-curve: {path}")
    if destination and destination["mode"] != "disabled":
        from spatialprobe.run.loggers import log_figures

        config = {"table": str(Path(args.table).resolve()), "tolerance": args.tolerance, "metric": args.metric,
                  "figures": sorted({p.stem for p in written if p.suffix == ".png"}),
                  "tables": sorted({p.stem for p in written if p.suffix == ".csv"}), "sweeps": destination["sweeps"]}
        info = log_figures(written, outdir, project=destination["project"], entity=destination["entity"],
                           group=destination["group"], mode=destination["mode"], config=config)
        print(f"W&B figures run {info['wandb_id']} ({info['wandb_mode']}) in group {destination['group']}: "
              f"{info['wandb_dir']}" + (f"; upload: wandb sync {info['wandb_dir']}" if info["wandb_mode"] == "offline"
                                       else "") + (f" [{info['wandb_fallback']}]" if info["wandb_fallback"] else ""))
    sys.stdout.flush()


def wandb_destination(args, outdir: Path) -> dict:
    """Project, entity, group and mode of the figures run: the flags, else those of the table's runs."""
    from spatialprobe.config.wandb_login import require_wandb_login
    from spatialprobe.run.loggers import wandb_mode

    if args.wandb_mode:  # a mode given on the command line is answered before the table is read
        require_wandb_login(wandb_mode(args.wandb_mode, "--wandb-mode"), "--wandb-mode")
    df = load_table(args.table, args.metric)

    def runs_value(column: str):
        values = df[column].dropna().unique() if column in df.columns else []
        return values[0] if len(values) == 1 else None

    sweeps = sorted(map(str, df["sweep"].dropna().unique())) if "sweep" in df.columns else []
    group = args.group or runs_value("config.logger.group") or (sweeps[0] if len(sweeps) == 1 else None)
    mode = wandb_mode(args.wandb_mode or runs_value("config.logger.mode") or os.environ.get("WANDB_MODE")
                      or "offline", "--wandb-mode")
    require_wandb_login(mode, "--wandb-mode")
    return {"project": args.project or runs_value("config.logger.project") or "spatialprobe",
            "entity": args.entity or runs_value("config.logger.entity"), "mode": mode, "sweeps": sweeps,
            "group": str(group or outdir.resolve().parent.name)}


if __name__ == "__main__":
    main(sys.argv[1:])
