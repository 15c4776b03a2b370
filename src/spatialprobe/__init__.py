"""spatialprobe: remove spatial information from the last K units of a CNN and sweep K."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository's conf/ directory (the package is installed in editable mode from a checkout).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

from spatialprobe.config import resolvers as _resolvers  # noqa: E402  (config interpolations such as ${sp.grid_classes:...})

_resolvers.register()
