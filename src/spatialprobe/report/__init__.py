"""Figures and tables from result records: the K-curves and tables of a sweep (:mod:`~spatialprobe.report.figures`,
read from a table :mod:`~spatialprobe.report.collect` writes), the detection figures
(:mod:`~spatialprobe.report.detection`) and those of the position study (:mod:`~spatialprobe.report.position`), the
results site (:mod:`~spatialprobe.report.site`, the command ``python -m spatialprobe.report`` in ``__main__``) and
the papers' numbers it compares with (:mod:`~spatialprobe.report.papers`). Everything here reads records and files;
nothing trains. Below: the one figure saver they share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Chart:
    """The lines one figure (or panel) draws, for a native chart (W&B line series): ``points`` has
    the columns ``series`` (one line each), ``x`` and ``y``."""

    title: str
    xname: str
    points: Any


class Outputs(list):
    """What plot wrote: the paths (a list, as before) and ``charts``, the data behind its figures
    by name. ``+=`` merges both, so every figure and table a plot function returns is logged to
    W&B by ``--wandb`` without a list of names to keep up to date."""

    def __init__(self, paths=(), charts: dict[str, Chart] | None = None):
        super().__init__(paths)
        self.charts: dict[str, Chart] = dict(charts or {})

    def __iadd__(self, other):
        super().__iadd__(other)
        self.charts.update(getattr(other, "charts", {}))
        return self


def save_figure(fig, stem: Path, charts: dict[str, Chart] | None = None, tight: bool = False) -> Outputs:
    """``stem``.png and .pdf, the figure closed; ``charts`` (name -> Chart) registered with them.
    ``tight``: crop the canvas to what is drawn (``bbox_inches="tight"``)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        fig.savefig(f"{stem}.{ext}", dpi=150, **({"bbox_inches": "tight"} if tight else {}))
        paths.append(Path(f"{stem}.{ext}"))
    pyplot().close(fig)
    return Outputs(paths, charts)


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
