"""spatialprobe: remove spatial information from the last K units of a CNN and sweep K."""

from pathlib import Path

__version__ = "0.1.0"

def _conf_dir() -> Path:
    """The Hydra configs, found through the package ``spatialprobe.conf`` (setup.py maps the checkout's conf/
    folder to it): the checkout's conf/ in an editable install, the package's own copy in an installed wheel."""
    from importlib.util import find_spec

    return Path(find_spec("spatialprobe.conf").origin).resolve().parent


#: The directory of the Hydra configs (conf/ of a checkout, or spatialprobe/conf of an installed wheel).
CONF_DIR = _conf_dir()

from spatialprobe.config import resolvers as _resolvers  # noqa: E402  (config interpolations such as ${sp.grid_classes:...})

_resolvers.register()
