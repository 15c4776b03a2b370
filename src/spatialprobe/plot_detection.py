"""S0's detection figures (Fig. 8 examples, Fig. 9 error shares) and table from detection records (the
library: :mod:`spatialprobe.report.detection`).

    python -m spatialprobe.plot_detection runs/sweeps/detect_cpu [-o DIR] [--data-root ROOT]
"""

from __future__ import annotations

import argparse
import sys

from spatialprobe.errors import reported
from spatialprobe.report.detection import make_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spatialprobe.plot_detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="run or sweep directories holding detection records")
    parser.add_argument("-o", "--outdir", help="where the figures go (default: figures/ in the first directory)")
    parser.add_argument("--data-root", help="the data set's root, when it moved since training")
    args = parser.parse_args(argv)
    with reported():
        written = make_all(args.dirs, args.outdir, args.data_root)
    for path in written:
        print(path)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
