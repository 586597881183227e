"""The log's high-water mark: the newest signed checkpoint, kept outside the database.

Whoever can write the database but not the log key cannot sign a new checkpoint, but could
drop the newest entries together with their tree nodes and newer checkpoints: the older
checkpoints left in the database still sign the shorter log (a revocation disappears). So
after every transaction that appended, the newest signed checkpoint is also written,
atomically, to a file beside the log key (``keys/log-checkpoint``), and every command that
opens the log checks that the database still holds that checkpoint and the entries it covers.
The file only moves forward; a crash between the database commit and the file write leaves
the file one checkpoint behind, never ahead. It is written without an fsync of its own (the
database's commit is the one fsync per transaction), so a power cut may also leave it behind
or empty; an empty or unreadable mark is reported as such, never taken for a truncation.

What it cannot see: someone who can write both the database and the keys directory (they
hold the log key too, and can sign anything), or a truncation that is followed by restoring
an old copy of this file. An outside auditor who keeps checkpoints (``issuer audit verify
--checkpoint``) sees both (docs/transparency-log.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from issuer.core.files import atomic_write
from issuer.log.tlog import LogVerificationError, TransparencyLog

HIGHWATER_FILE = "log-checkpoint"


def _size(note: str) -> int:
    """The tree size line of a checkpoint note (C2SP tlog-checkpoint: the second line)."""
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else -1


class HighWaterMark:
    """The newest checkpoint file of one log."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / HIGHWATER_FILE

    def read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise LogVerificationError(f"cannot read the log's high-water mark {self.path}: "
                                       f"{exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Several processes (the service, CLI commands) commit to one log: the lock keeps a
        # slower writer from moving the mark back over a newer one.
        fd = os.open(self.path.with_name(HIGHWATER_FILE + ".lock"), os.O_RDWR | os.O_CREAT,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def advance(self, note: str) -> None:
        """Record ``note`` unless the file already holds a checkpoint at least as new."""
        with self._locked():
            current = self.read()
            if current is not None and _size(current) >= _size(note):
                return
            # Not fsynced: a power cut may lose the newest mark (it then lags, which is safe)
            # or leave the file empty, which check() reports as such; one fsync per commit
            # is the database's.
            atomic_write(self.path, note.encode("utf-8"), mode=0o600, durable=False)

    def reset(self, note: str) -> None:
        """Move the mark back to ``note``: only a restore that accepted losing the newer
        entries does, after logging that loss."""
        with self._locked():
            atomic_write(self.path, note.encode("utf-8"), mode=0o600)

    def check(self, log: TransparencyLog) -> int:
        """The database must still hold the checkpoint recorded here, and every entry it
        covers; returns its tree size. Costs two indexed lookups."""
        note = self.read()
        if note is None:
            raise LogVerificationError(
                f"the log's high-water mark {self.path} is missing; restore the keys "
                "directory from its backup (docs/operations.md)")
        if _size(note) < 0:
            raise LogVerificationError(
                f"the log's high-water mark {self.path} is damaged (a power cut while it was "
                "written?); check the log against a checkpoint you kept (`issuer audit verify "
                "--checkpoint FILE`), then remove the file to accept the database as it is")
        head = log.open(note)
        row = log.conn.execute("SELECT root_hash FROM log_checkpoints WHERE tree_size = ?",
                               (head.size,)).fetchone()
        entries = log.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM events").fetchone()[0]
        if row is None or log.size() < head.size or entries < head.size:
            raise LogVerificationError(
                f"the log was truncated: the checkpoint signed at tree size {head.size} "
                f"({self.path}) is gone from the database, which holds {entries} entries; "
                "restore the database from a backup (docs/operations.md)")
        if bytes(row[0]) != head.root_hash:
            raise LogVerificationError(
                f"the log was rewritten: the database's checkpoint at tree size {head.size} "
                f"differs from the one signed and kept in {self.path}")
        return head.size
