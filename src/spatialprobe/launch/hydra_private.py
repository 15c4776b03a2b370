"""The pieces of Hydra's private API (``hydra._internal``) that spatialprobe relies on, and only here.

Hydra has no public way to apply ``key=value`` overrides to an already composed config, nor to
name a job's directory from its overrides; :func:`spatialprobe.launch.sweep.compose_jobs` needs both to
check a 150-job sweep without composing 150 defaults lists. tests/test_hydra_private.py pins the
behaviour relied on against Hydra's public ``compose`` and a real multirun, so a Hydra upgrade
that changes it fails there, not in a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig


def apply_overrides(cfg: DictConfig, overrides: Sequence[Override]) -> None:
    """Apply parsed value overrides (``k=v``, ``+k=v``, ``++k=v``, ``~k``) to ``cfg`` in place, as Hydra's
    composition does after the defaults list (errors: ``hydra.errors.ConfigCompositionException``)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


def override_dirname(overrides: Sequence[Override], dirname: DictConfig) -> str:
    """``hydra.job.override_dirname`` of a job with these task overrides, under
    ``hydra.job.config.override_dirname`` (``kv_sep``, ``item_sep``, ``exclude_keys``)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return get_overrides_dirname(overrides=list(overrides), kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
                                 exclude_keys=list(dirname.exclude_keys))
