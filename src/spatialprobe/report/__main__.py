"""The results site: a folder of runs as static HTML pages, every number beside the paper's (the library:
:mod:`spatialprobe.report.site`).

    python -m spatialprobe.report runs/sweeps [more dirs ...] -o runs/site [--tolerance 1.0] [--title TEXT]

Opens from disk (file://) or from any web host; nothing is fetched from a network.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spatialprobe.config.cli import ArgumentParser
from spatialprobe.errors import UserError, reported

EXAMPLE = "python -m spatialprobe.report runs/sweeps/<experiment> -o runs/site"


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m spatialprobe.report", description=__doc__.split("\n\n")[0],
                            example=EXAMPLE)
    parser.add_argument("dirs", nargs="*", help="sweep (or run) directories to search for records, e.g. runs/sweeps")
    parser.add_argument("-o", "--output", help="the site's folder: new, empty, or a site built before, which is "
                        "replaced (default: DIR/site for one DIR, else ./results-site)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="points from a paper's number still counted as "
                        "reproduced (default 1.0)")
    parser.add_argument("--title", default="spatialprobe results", help="the index page's title")
    args = parser.parse_args(argv)
    with reported():
        if not args.dirs:
            raise UserError(f"give the directories of the runs (e.g. runs/sweeps); e.g. {EXAMPLE}")
        if args.tolerance < 0:
            raise UserError(f"--tolerance={args.tolerance} is invalid: must be >= 0")
        out = Path(args.output) if args.output else (
            Path(args.dirs[0]) / "site" if len(args.dirs) == 1 else Path("results-site"))
        from spatialprobe.report.site import build_site

        site = build_site(args.dirs, out, tolerance=args.tolerance, title=args.title)
    words = ", ".join(f"{e.name}: {e.status}" for e in site.experiments)
    print(f"{len(site.pages)} pages from {site.records} run record(s) ({words}) -> {site.out}")
    print(f"site: {(site.out / 'index.html').resolve()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
