"""Small helpers that check one key of a config and raise the one-line error of :mod:`spatialprobe.errors`.

``require_*`` raise :class:`~spatialprobe.errors.ConfigError` (key, bad value, valid choices) or
:class:`~spatialprobe.errors.MissingKeyError` (a mandatory key, with an example);
:mod:`spatialprobe.config.schema` uses them to say what a valid configuration is, key by key. They read
a composed ``DictConfig`` or a plain (resolved) dict alike, and need only OmegaConf.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spatialprobe.errors import ConfigError, MissingKeyError

_ABSENT = object()


def get(cfg: DictConfig | Mapping, key: str, default: object = None) -> object:
    """The value at the dotted ``key`` (interpolations resolved), or ``default`` when there is no such key."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig):
            return OmegaConf.select(node, ".".join(parts[i:]), default=default)
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def has(cfg: DictConfig | Mapping, key: str) -> bool:
    """Whether the config has the dotted ``key`` (whatever its value, null included)."""
    return get(cfg, key, _ABSENT) is not _ABSENT


def require_given(cfg: DictConfig | Mapping, key: str, example: str, what: str) -> object:
    """A mandatory key (``???`` in its yaml, or null where the command needs it): one line with an example."""
    if isinstance(cfg, DictConfig) and "." not in key and key in cfg and OmegaConf.is_missing(cfg, key):
        value = None
    else:
        value = get(cfg, key)
    if value is None or value == "???" or value == "":
        raise MissingKeyError(key, what, f"{key}={example}")
    return value


def require_choice(cfg: DictConfig, key: str, choices: Iterable[object]) -> object:
    value = get(cfg, key)
    choices = list(choices)
    if value not in choices:
        raise ConfigError(key, value, "not one of the valid choices", choices)
    return value


def require_number(
    cfg: DictConfig,
    key: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    optional: bool = False,
) -> object:
    """Check that ``key`` holds a number in the given range (None allowed when optional)."""
    value = get(cfg, key)
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(key, value, f"must be {kind}" + (" or null" if optional else ""))
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise ConfigError(key, value, f"must be {'>' if exclusive_minimum else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, value, f"must be <= {maximum}")
    return value


def require_positive_int(cfg: DictConfig, key: str, optional: bool = False) -> object:
    return require_number(cfg, key, integer=True, minimum=1, optional=optional)


def dotted_keys(node: Mapping, prefix: str = "") -> list[str]:
    """Every dotted key of a plain nested dict, containers included."""
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys


def unknown_key(key: str, value: object, config: Mapping) -> ConfigError:
    """The one-line answer to an override of a key that ``config`` (a plain, unresolved dict) lacks:
    the closest existing keys, and the keys that do exist where it was looked for."""
    keys = [k for k in dotted_keys(config) if not k.startswith("hydra.") and k != "hydra"]
    parent, _, _ = key.rpartition(".")
    while parent and parent not in keys:
        parent = parent.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    scores = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in keys), reverse=True)
    close = [k for r, k in scores[:3] if r >= max(0.6, scores[0][0] - 0.05)] if scores else []
    reason = f"{parent or 'the config'} has no key {key[len(parent) + 1 if parent else 0:]!r}"
    reason += f"; did you mean {' or '.join(close)}?" if close else f"; a new key needs +{key}=..."
    return ConfigError(key, value, reason, sorted(siblings))


