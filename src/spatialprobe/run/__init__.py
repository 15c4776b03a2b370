"""What every training run uses: its record (:mod:`~spatialprobe.run.records`), atomic files, random streams,
callbacks (checkpoints, signals, progress), loggers (CSV, W&B), speed options, its output directory and
console, and the measurements of a network (parameters, FLOPs, feature maps, receptive field)."""
