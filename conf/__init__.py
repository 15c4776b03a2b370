"""The Hydra configs of spatialprobe (the yaml files below); this file makes the folder the package
``spatialprobe.conf``, so the configs ship with the package (setup.py) and are found through it."""
