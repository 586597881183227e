"""Writing files so that a crash leaves the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte, durably, or not at all.

    ``durable=False`` skips the fsyncs, for a file whose loss in a power cut is harmless
    (it may then hold the old content, or be empty, after the crash)."""
    with atomic_writer(path, mode, durable=durable) as out:
        out.write(data)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644, *,
                  durable: bool = True) -> Iterator[BinaryIO]:
    """:func:`atomic_write` for content written piece by piece: ``path`` appears, complete,
    when the block ends without an exception, and not at all otherwise."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
