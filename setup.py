"""The package's layout beyond what pyproject.toml can say: the Hydra configs of the top-level conf/ folder ship
inside the package as ``spatialprobe.conf`` (``spatialprobe.CONF_DIR`` finds them through the package, from a
checkout and from an installed wheel alike)."""

from setuptools import find_namespace_packages, setup

CONF = ["spatialprobe.conf", *(f"spatialprobe.conf.{p}" for p in find_namespace_packages("conf"))]

setup(
    package_dir={"": "src", "spatialprobe.conf": "conf"},
    # hydra_plugins is a namespace package (Hydra finds its launcher and sweeper plugins there)
    packages=[*find_namespace_packages("src", include=["spatialprobe*", "hydra_plugins*"]), *CONF],
    # py.typed (PEP 561), the papers' numbers, the results site's stylesheet and script; every config
    package_data={"spatialprobe": ["py.typed", "report/papers/*.yaml", "report/assets/*"],
                  **{p: ["*.yaml"] for p in CONF}},
)
