"""Writing files all or nothing: a crash at any moment leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err`` (itself, or its cause / context: torch.save reports a failed write as a
    RuntimeError whose context is the OSError), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", sync: bool = True,
                before_replace: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """An open temporary file beside ``path``; when the block ends without an error it is flushed, synced
    (``sync``), given the permissions a new file would get, and renamed over ``path`` (``before_replace(path)``
    runs just before, when the new file is complete: it may keep the old one). On an error it is
    removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if before_replace is not None:
            before_replace(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:  # the rename itself survives a power cut once the directory is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
