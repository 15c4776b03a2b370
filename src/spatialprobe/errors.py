"""Errors the user can fix, reported as one line and a non-zero exit code.

Every entry point runs its work inside :func:`reported`: a :class:`UserError` prints one line on
stderr (``spatialprobe: error: ...``) and exits with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix: a bad config value, missing data, an unusable output dir."""


class ConfigError(UserError):
    """A configuration key holds a value outside its valid set."""

    def __init__(self, key: str, value: object, reason: str, choices: Iterable[object] | None = None):
        self.key, self.value, self.reason = key, value, reason
        self.choices = [str(c) for c in choices] if choices is not None else None
        msg = f"{key}={value!r} is invalid: {reason}"
        if self.choices is not None:
            msg += f" (valid: {', '.join(self.choices)})"
        super().__init__(msg)


class MissingKeyError(ConfigError):
    """A mandatory key was not given (``???`` in its yaml, or needed by the command): named with an example."""

    def __init__(self, key: str, what: str, example: str):
        self.key, self.value, self.reason, self.choices = key, None, what, [example]
        UserError.__init__(self, f"{key} is required: {what}; e.g. {example}")


class DataError(UserError):
    """Data files are missing, truncated or not in the expected format."""


class DivergenceError(UserError):
    """Training produced a NaN or infinite loss."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def report(err: UserError) -> None:
    """Print ``err`` as the one line ``spatialprobe: error: ...`` on stderr and exit with status 2."""
    sys.stdout.flush()
    print(f"spatialprobe: error: {one_line(err)}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR) from None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn a UserError into one line on stderr and exit status 2 (also one raised by a config resolver, which
    OmegaConf wraps into its own error, e.g. ``$SPATIALPROBE_CPU_BF16`` read by ``${sp.cpu_precision:}``)."""
    try:
        yield
    except UserError as err:
        report(err)
    except Exception as err:
        if type(err).__module__.startswith("omegaconf"):
            cause = err  # OmegaConf keeps the resolver's own error in the chain of the one it raises
            for _ in range(8):
                cause = cause.__cause__ or cause.__context__
                if cause is None:
                    break
                if isinstance(cause, UserError):
                    report(cause)
        raise
