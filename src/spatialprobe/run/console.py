"""What reaches the console: spatialprobe's own lines; the dependencies' lines go to the run's log file.

Hydra's logging configs ``conf/hydra/job_logging/quiet.yaml`` and ``hydra_logging/quiet.yaml``
(the defaults of conf/train.yaml) put :class:`OwnLinesOnly` on the console handler; warnings are
routed into logging (:func:`spatialprobe.config.cli.capture_warnings`), so a dependency's deprecation warning lands in
the log file, not on the terminal. ``-v`` / ``--verbose`` on the command line (:mod:`spatialprobe.config.cli`) selects Hydra's
default logging configs instead (everything on the console, as before).
"""

from __future__ import annotations

import logging

# the launcher's info lines ("#3 : k=3 ...") duplicate the sweep's progress lines; its warnings and errors
# are printed, not logged, so they reach the console anyway
OWN = ("spatialprobe", "__main__")


class OwnLinesOnly(logging.Filter):
    """Records of spatialprobe's loggers (but not those marked ``console=False``), and errors from anywhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if record.levelno >= logging.ERROR:
            return True
        # a line also printed to stdout is logged with extra={"console": False}: into the log file only
        return getattr(record, "console", True) and any(name == own or name.startswith(own + ".") for own in OWN)
