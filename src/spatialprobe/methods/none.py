"""none: the unmodified baseline (K = 0)."""

#: This method's kind, read without importing this module by spatialprobe.config.facts.
KIND = "none"
