"""Hydra sweeper plugin of spatialprobe: a multirun over a union of grids (``hydra/sweeper=grids``).

Hydra's basic sweeper runs one cartesian product. ``GridsSweeper`` runs several in one multirun,
so that a baseline and a method x K grid are one sweep (one progress count, one ETA, one launcher
filling every slot) without training the baseline once per method::

    hydra:
      sweeper:
        grids:
          - {method: none, k: 0}
          - {method: "spatial_shuffle,channel_shuffle", k: "3,6"}

Command-line overrides apply to every grid (a swept key replaces the grid's values).
"""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class GridsSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict | None = None,
                 grids: list[dict] | None = None, **_: Any) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grids = grids or []

    def split_arguments(self, overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:  # type: ignore[override]
        """The jobs of every grid (``spatialprobe.launch.sweep.sweep_overrides``), in batches of ``max_batch_size``."""
        from spatialprobe.launch.sweep import sweep_overrides

        jobs = sweep_overrides(self.config)
        n = max_batch_size or len(jobs) or 1
        return [jobs[i:i + n] for i in range(0, len(jobs), n)]
