"""Hydra launcher plugin of spatialprobe (Hydra finds launchers in the ``hydra_plugins`` namespace).

``BoundedLocalLauncher`` is hydra-submitit-launcher's local launcher that runs at most
``max_parallel`` jobs at a time: submitit's local executor starts every job it is handed at once,
which a laptop cannot afford for a 40-run sweep. Selected by ``hydra/launcher=local``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher


class BoundedLocalLauncher(LocalLauncher):
    def __init__(self, max_parallel: int | None = 1, **params: Any) -> None:
        if max_parallel is not None and (isinstance(max_parallel, bool) or int(max_parallel) < 1):
            raise ValueError(f"hydra.launcher.max_parallel={max_parallel!r} is invalid: must be >= 1 or null")
        super().__init__(**params)
        self.max_parallel = None if max_parallel is None else int(max_parallel)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """Hand the jobs to submitit ``max_parallel`` at a time, each group after the previous one ended."""
        n = self.max_parallel or len(job_overrides)
        results: list[Any] = []
        for start in range(0, len(job_overrides), n):
            results.extend(super().launch(job_overrides[start:start + n], initial_job_idx + start))
        return results
