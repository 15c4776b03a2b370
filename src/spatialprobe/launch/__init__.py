"""Launching runs and sweeps: the runner of one configuration (:mod:`~spatialprobe.launch.runner`), a sweep's
expansion, checks and progress (:mod:`~spatialprobe.launch.sweep`, :mod:`~spatialprobe.launch.progress`),
its cost in FLOPs and GPU-hours (:mod:`~spatialprobe.launch.cost`), the GPUs of a local sweep, and the one
place that uses Hydra's private API (:mod:`~spatialprobe.launch.hydra_private`)."""
