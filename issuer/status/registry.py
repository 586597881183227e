"""Statement status: Token Status List indices, revocation and suspension (issuer side).

Every statement carries ``status: {"status_list": {"idx": N, "uri": ...}}``
(draft-ietf-oauth-status-list section 6, "Referenced Token"), pointing at a list this issuer
serves as a signed ``statuslist+jwt``. Lists use 2 bits per statement (VALID, INVALID,
SUSPENDED; section 7).

Each statement's list, index and current status are columns of its audit row. Indices are
allocated pseudo-randomly within a list and never reused: a keyed permutation of
``[0, size)`` (a Feistel network with cycle walking, keyed by a secret kept per list) maps the
list's allocation counter to an index. So allocation is O(1), never repeats, needs no search,
and the order of indices reveals nothing about the order of issuance to anyone without the key
(the draft's privacy considerations: a verifier must not learn which tokens were issued
together). A list rolls over to a new one when its counter reaches its size.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from issuer.core.clock import Clock
from issuer.core.config import Config
from issuer.core.encoding import b64url, canonical_json
from issuer.core.errors import Conflict, NotFound, UsageError
from issuer.keys.keystore import Keystore
from issuer.status import statuslist
from issuer.store.audit import AuditStore, StatementRecord
from issuer.store.integrity import list_event

BITS = 2
STATUS_NAMES = {statuslist.VALID: "active", statuslist.INVALID: "revoked",
                statuslist.SUSPENDED: "suspended"}
STATUSLIST_TYP = "statuslist+jwt"
#: How long a signed Status List Token stays valid (its ``exp``); verifiers refetch after
#: ``ttl`` anyway, so this only bounds how long a stale copy could be presented as current.
TOKEN_VALIDITY = 86400
#: Feistel rounds: four with a PRF give a strong pseudo-random permutation (Luby-Rackoff).
_ROUNDS = 4


class IndexPermutation:
    """A keyed pseudo-random permutation of ``[0, size)``: a Feistel network over the fewest
    bits covering ``size`` (unbalanced by one bit when that number is odd), with cycle walking.

    Never change this function for an existing list: its indices are already handed out.
    """

    def __init__(self, key: bytes, size: int) -> None:
        if size < 1:
            raise ValueError("a permutation needs a positive size")
        self.key = key
        self.size = size
        bits = max(2, (size - 1).bit_length())
        self.big = (bits + 1) // 2  # the wider half, when bits is odd
        self.small = bits - self.big

    def _round(self, number: int, value: int, width: int) -> int:
        # Keyed BLAKE2b as the round function: a PRF, and several times cheaper than HMAC.
        digest = hashlib.blake2b(value.to_bytes(8, "big"), digest_size=8, key=self.key,
                                 person=b"ssi-status-%02d" % number).digest()
        return int.from_bytes(digest, "big") & ((1 << width) - 1)

    def _encrypt(self, value: int) -> int:
        # Alternate which half is wide so every round maps (big|small) bits onto themselves.
        left, right, lw, rw = value >> self.small, value & ((1 << self.small) - 1), \
            self.big, self.small
        for number in range(_ROUNDS):
            left, right, lw, rw = right, left ^ self._round(number, right, lw), rw, lw
        return (left << rw) | right

    def __call__(self, counter: int) -> int:
        if not 0 <= counter < self.size:
            raise ValueError(f"counter {counter} outside [0, {self.size})")
        value = self._encrypt(counter)
        while value >= self.size:  # cycle walking stays inside [0, size)
            value = self._encrypt(value)
        return value


@dataclass(frozen=True)
class StatusRef:
    """Where one statement's status lives."""

    list_id: str
    idx: int
    uri: str

    def claim(self) -> dict[str, Any]:
        return {"status_list": {"idx": self.idx, "uri": self.uri}}


class StatusRegistry:
    """Status lists in the audit database; every status change is an audit event."""

    def __init__(self, audit: AuditStore, config: Config, clock: Clock) -> None:
        self.audit = audit
        self.config = config
        self.clock = clock
        # list -> (version, claims, signed token)
        self._documents: dict[str, tuple[int, dict[str, Any], str]] = {}
        self._lock = threading.Lock()

    def uri(self, list_id: str) -> str:
        return f"{self.config.issuer}/v1/status-lists/{list_id}"

    # --- allocation (inside the mint transaction) ---------------------------------------------

    def allocate(self, count: int, now: int, *, actor: str, channel: str) -> list[StatusRef]:
        """``count`` fresh indices, rolling over to new lists as they fill (a new list is an
        audit event: its bits, size and a digest of its key are what `audit verify` checks)."""
        refs: list[StatusRef] = []
        conn = self.audit.conn
        while len(refs) < count:
            row = conn.execute("SELECT id, size, prp_key, next_counter FROM status_lists "
                               "WHERE next_counter < size ORDER BY created_at DESC, id LIMIT 1"
                               ).fetchone()
            if row is None:
                row = self._new_list(now, actor, channel)
            list_id, size, key, counter = row[0], int(row[1]), bytes(row[2]), int(row[3])
            take = min(count - len(refs), size - counter)
            permute = IndexPermutation(key, size)
            refs += [StatusRef(list_id, permute(c), self.uri(list_id))
                     for c in range(counter, counter + take)]
            conn.execute("UPDATE status_lists SET next_counter = ? WHERE id = ?",
                         (counter + take, list_id))
        return refs

    def _new_list(self, now: int, actor: str, channel: str) -> tuple[str, int, bytes, int]:
        list_id = b64url(secrets.token_bytes(8))
        key = secrets.token_bytes(32)
        size = self.config.status_list_size
        self.audit.conn.execute(
            "INSERT INTO status_lists (id, bits, size, prp_key, next_counter, version, created_at)"
            " VALUES (?, ?, ?, ?, 0, 0, ?)", (list_id, BITS, size, key, now))
        self.audit.append_event(time=now, type="status_list.created", actor=actor,
                                channel=channel, subject=list_id,
                                data=list_event(list_id, BITS, size, key, now))
        return list_id, size, key, 0

    # --- changes --------------------------------------------------------------------------------

    def status_of(self, jti: str) -> int:
        row = self.audit.conn.execute("SELECT status FROM statements WHERE jti = ?",
                                      (jti,)).fetchone()
        return statuslist.VALID if row is None else int(row[0])

    def change(self, record: StatementRecord, target: int, reason: str, *, actor: str,
               channel: str, now: int) -> tuple[StatementRecord, bool]:
        """Set a statement's status; returns the record and whether anything changed.

        Revocation is final; suspension can be lifted. Revoking twice changes nothing.
        """
        if not reason.strip():
            raise UsageError("a reason is required (it is kept in the audit record)")
        with self.audit.transaction():
            current = self.status_of(record.jti)
            if current == target:
                return record, False
            if current == statuslist.INVALID:
                raise Conflict(f"statement {record.jti} is revoked; revocation is final")
            row = self.audit.conn.execute(
                "SELECT status_list, status_idx FROM statements WHERE jti = ?",
                (record.jti,)).fetchone()
            if row is None or row[0] is None:
                raise Conflict(f"statement {record.jti} carries no status list entry (it was "
                               "minted before revocation existed)")
            event = {statuslist.INVALID: "statement.revoked",
                     statuslist.SUSPENDED: "statement.suspended",
                     statuslist.VALID: "statement.unsuspended"}[target]
            self.audit.append_event(time=now, type=event, actor=actor, channel=channel,
                                    subject=record.jti,
                                    data={"jti": record.jti, "digest": record.digest,
                                          "reason": reason, "status_list": row[0],
                                          "idx": row[1], "status": STATUS_NAMES[target]})
            self.audit.conn.execute("UPDATE statements SET status = ? WHERE jti = ?",
                                    (target, record.jti))
            self.audit.conn.execute("UPDATE status_lists SET version = version + 1 WHERE id = ?",
                                    (row[0],))
            if target == statuslist.INVALID:
                self.audit.conn.execute("UPDATE statements SET revoked_at = ?, "
                                        "revocation_reason = ? WHERE jti = ?",
                                        (now, reason, record.jti))
        return self.audit.statement(record.jti), True

    # --- serving ---------------------------------------------------------------------------------

    def _list_row(self, list_id: str) -> tuple[int, int, int]:
        row = self.audit.conn.execute("SELECT bits, size, version FROM status_lists WHERE id = ?",
                                      (list_id,)).fetchone()
        if row is None:
            raise NotFound(f"no status list {list_id!r}")
        return int(row[0]), int(row[1]), int(row[2])

    def status_list(self, list_id: str) -> tuple[statuslist.StatusList, int]:
        """The list as it stands, and its version (bumped by every change)."""
        with self.audit.lock:
            bits, size, version = self._list_row(list_id)
            changed = self.audit.conn.execute(
                "SELECT status_idx, status FROM statements WHERE status_list = ? AND status != 0",
                (list_id,)).fetchall()
        lst = statuslist.StatusList(size, bits)
        for idx, status in changed:
            lst.set(int(idx), int(status))
        return lst, version

    def claims(self, list_id: str, now: int) -> dict[str, Any]:
        """The Status List Token payload (draft section 5.1)."""
        lst, _ = self.status_list(list_id)
        return {"iss": self.config.issuer, "sub": self.uri(list_id), "iat": now,
                "exp": now + TOKEN_VALIDITY, "ttl": self.config.status_list_ttl,
                "status_list": lst.to_json()}

    def document(self, list_id: str, keystore: Keystore) -> tuple[str, dict[str, Any]]:
        """The signed ``statuslist+jwt`` and its claims, re-signed only when the list changed
        or the cached token is older than ``ttl`` (so ETags stay stable between changes)."""
        now = int(self.clock.now())
        with self.audit.lock:
            _, _, version = self._list_row(list_id)
        with self._lock:
            cached = self._documents.get(list_id)
            if cached and cached[0] == version and now - cached[1]["iat"] < \
                    self.config.status_list_ttl:
                return cached[2], cached[1]
        claims = self.claims(list_id, now)
        token = keystore.signer().sign(canonical_json(claims), typ=STATUSLIST_TYP)
        with self._lock:
            self._documents[list_id] = (version, claims, token)
        return token, claims
