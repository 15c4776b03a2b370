"""P's figures of the position-channel attack (Figs. 4 and 6) from a record of ``spatialprobe.rank`` (the
library: :mod:`spatialprobe.report.position`).

    python -m spatialprobe.position_figures runs/<run>/checkpoints/position-overall+left+right-image_flip.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spatialprobe.errors import UserError, reported
from spatialprobe.report.position import draw_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", type=Path, help="a position-*.json record of spatialprobe.rank")
    ap.add_argument("-o", "--out", type=Path, help="folder (default: <record>-figures next to it)")
    args = ap.parse_args()
    with reported():
        try:
            record = json.loads(args.record.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{args.record}: not a readable record ({type(err).__name__}: {err})") from None
        if not isinstance(record, dict) or "rankings" not in record:
            raise UserError(f"{args.record}: not a record of spatialprobe.rank (it has no rankings)")
        for path in draw_all(record, args.out or args.record.parent / f"{args.record.stem}-figures"):
            print(path)


if __name__ == "__main__":
    main()
