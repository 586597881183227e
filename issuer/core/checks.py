"""``issuer audit verify`` and ``issuer doctor``: named checks over one issuer, each reporting
every problem it finds rather than stopping at the first (docs/audit.md, docs/operations.md).

A check is a name and a function of the :class:`Authority` returning an
:class:`~issuer.store.integrity.Outcome`. ``audit verify`` runs :func:`audit_checks`;
``doctor`` runs :func:`doctor_checks`, and ``issuer serve`` runs the doctor's checks before it
binds.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from issuer.core.authority import Authority
from issuer.core.errors import ConfigError, Conflict, IssuerError
from issuer.log.highwater import HighWaterMark
from issuer.log.tlog import VerifyReport, verify_log
from issuer.store.audit import DATABASE_ERRORS
from issuer.store.integrity import STATE_CHECKS, Outcome, sqlite_integrity

AuthorityCheck = Callable[[Authority], Outcome]


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: Outcome

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.outcome.ok, "checked": self.outcome.checked,
                "problems": self.outcome.problems, "problem_count": self.outcome.failures}


@dataclass
class Report:
    """Every check's result; ``log`` holds what the log check recomputed, when it passed."""

    results: list[CheckResult] = field(default_factory=list)
    log: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return all(r.outcome.ok for r in self.results)

    def problems(self) -> list[str]:
        return [f"{r.name}: {p}" for r in self.results for p in r.outcome.problems]

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "checks": [r.as_json() for r in self.results]}
        if self.log is not None:
            body.update(self.log.as_json())
        return body


def run(auth: Authority, checks: Sequence[tuple[str, AuthorityCheck]],
        report: Report | None = None) -> Report:
    """Run every check; one that raises an IssuerError failed with that one problem."""
    report = report or Report()
    for name, check in checks:
        try:
            outcome = check(auth)
        except IssuerError as exc:
            outcome = Outcome()
            outcome.problem(exc.description)
        except DATABASE_ERRORS as exc:
            outcome = Outcome()
            outcome.problem(f"the database could not be read: {exc}")
        report.results.append(CheckResult(name, outcome))
    return report


def _single(check: Callable[[Authority], int]) -> AuthorityCheck:
    """A check that raises on its problem and returns how much it checked."""
    def run_one(auth: Authority) -> Outcome:
        return Outcome(checked=check(auth))
    return run_one


def _identity(auth: Authority) -> int:
    auth.check_open(auth.inspect())
    return 1


def _keyring(auth: Authority) -> Outcome:
    """The keyring's public state against the logged key events: a key added by hand, a
    revoked key un-revoked, a swapped public key (docs/keys.md)."""
    outcome = Outcome(checked=len(auth.keystore.keys()))
    for problem in auth.keys.keyring_problems():
        outcome.problem(problem)
    return outcome


def audit_checks(report: Report, kept: Sequence[str] = ()) -> list[tuple[str, AuthorityCheck]]:
    """Everything ``audit verify`` checks, in order: the file, the log, whose it is and the
    log's high-water mark, every table against the log, and the keyring against the key
    events."""

    def log_check(auth: Authority) -> Outcome:
        auth.inspect()
        report.log = verify_log(auth.log, kept)
        return Outcome(checked=report.log.entries)

    def table(check: Callable[[Any], Outcome]) -> AuthorityCheck:
        return lambda auth: check(auth.inspect())

    return [("database file", table(sqlite_integrity)),
            ("log", log_check),
            ("identity and high-water mark", _single(_identity)),
            *[(name, table(check)) for name, check in STATE_CHECKS],
            ("keyring", _keyring)]


def audit_verify(auth: Authority, kept: Sequence[str] = ()) -> Report:
    report = Report()
    return run(auth, audit_checks(report, kept), report)


# --- doctor ------------------------------------------------------------------------------------


def _keys_load(auth: Authority) -> Outcome:
    """Every key that may still sign loads (right passphrase, file readable, matches its kid),
    and so does the log key."""
    outcome = Outcome()
    for key in auth.keystore.keys():
        if key.state not in ("active", "next"):
            continue
        outcome.checked += 1
        try:
            auth.keystore.signer(key.kid)
        except IssuerError as exc:
            outcome.problem(f"key {key.kid} ({key.state}): {exc.description}")
    outcome.checked += 1
    try:
        auth.keystore.log_signer()
    except IssuerError as exc:
        outcome.problem(f"log key: {exc.description}")
    return outcome


def _private(path: Path, outcome: Outcome, mode: int = 0o077) -> None:
    try:
        found = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    outcome.checked += 1
    if found & mode:
        outcome.problem(f"{path} is mode {found:04o}; it holds secrets: chmod "
                        f"{0o700 if path.is_dir() else 0o600:o} {path}")


def _file_modes(auth: Authority) -> Outcome:
    """The database (token hashes, status list keys) and the keys are readable by their owner
    only."""
    outcome = Outcome()
    database = auth.config.database
    if isinstance(database, Path):  # a SQLite file (a PostgreSQL server guards its own)
        for path in (database, database.with_name(database.name + "-wal"),
                     database.with_name(database.name + "-shm")):
            _private(path, outcome)
    _private(auth.config.keys_dir, outcome)
    for path in sorted(auth.config.keys_dir.glob("*")):
        if path.is_file() and path.name != ".gitignore":
            _private(path, outcome)
    return outcome


def doctor_checks() -> list[tuple[str, AuthorityCheck]]:
    """What ``issuer doctor`` and ``issuer serve`` check: keys load, the database is this
    issuer's, whole up to its high-water mark and passes SQLite's quick check, file modes."""
    return [("keys", _keys_load),
            ("database file", lambda auth: sqlite_integrity(auth.inspect(), quick=True)),
            ("identity and high-water mark", _single(_identity)),
            ("file modes", _file_modes)]


def doctor(auth: Authority) -> Report:
    return run(auth, doctor_checks())


# --- backup and restore ------------------------------------------------------------------------


def backup(auth: Authority, target: Path) -> int:
    """``issuer backup``: an online copy of this issuer's (checked) database."""
    return auth.audit.backup(target)


def restore(auth: Authority, source: Path, *, accept_loss: bool, actor: str) -> int:
    """``issuer restore``: check a backup as ``audit verify`` would, then put it in place of
    the database. Returns how many signed entries it lacks (newer than the backup); refused
    unless ``accept_loss``, and then the loss is itself logged (``log.restored``).
    The issuer must be stopped meanwhile."""
    database = auth.config.database
    if not isinstance(database, Path):
        raise ConfigError(f"issuer restore puts back a SQLite database; restore "
                          f"{auth.audit.path} with pg_restore (docs/operations.md, "
                          "\"Backup and restore\")")
    staged = database.with_name(database.name + ".restoring")
    staged.unlink(missing_ok=True)
    os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        shutil.copyfile(source, staged)
        lost = _check_staged(auth, staged, accept_loss=accept_loss, actor=actor)
        auth.close()
        for suffix in ("-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        os.replace(staged, database)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return lost


def _check_staged(auth: Authority, staged: Path, *, accept_loss: bool, actor: str) -> int:
    copy = Authority(replace(auth.config, database=staged), clock=auth.clock)
    try:
        report = run(copy, [(name, check) for name, check in audit_checks(Report())
                            if name != "identity and high-water mark"])
        copy.check_identity()
        if not report.ok:
            raise Conflict(f"the backup fails audit verify: {report.problems()[0]}")
        mark = HighWaterMark(auth.config.keys_dir)
        try:
            mark.check(copy.log)
            return 0
        except IssuerError:
            kept = mark.read()
            newest = copy.log.latest()[0].size
            behind = copy.log.open(kept).size - newest if kept else 0
            if behind <= 0:
                raise
        if not accept_loss:
            raise Conflict(f"the backup holds {newest} log entries but the issuer signed a "
                           f"checkpoint of {newest + behind}: restoring it loses {behind} "
                           "entries (statements issued after the backup lose their records); "
                           "pass --accept-loss to restore it anyway")
        with copy.audit.transaction():
            copy.audit.append_event(time=copy.now(), type="log.restored", actor=actor,
                                    channel="cli", subject=copy.log.origin,
                                    data={"restored_size": newest, "lost_entries": behind,
                                          "lost_checkpoint": kept})
        mark.reset(copy.log.latest()[1])
        return behind
    finally:
        copy.close()
