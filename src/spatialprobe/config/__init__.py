"""What a valid configuration is, checked without torch: the schema's facts and checks
(:mod:`~spatialprobe.config.schema`, from the facts declared beside the code, :mod:`~spatialprobe.config.facts`),
the one-key helpers (:mod:`~spatialprobe.config.checks`), the command line's pre-check
(:mod:`~spatialprobe.config.cli`) and the interpolations the yaml files use (:mod:`~spatialprobe.config.resolvers`)."""
