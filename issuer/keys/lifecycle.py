"""The key lifecycle: pre-publication, rotation, retirement by need, revocation, history.

States (docs/keys.md): ``next`` (published, not signing) -> ``active`` (signing; exactly one)
-> ``retired`` (published, not signing) -> ``expired`` (no longer published); any published
key can be ``revoked`` (withdrawn at once). The timing rules:

- **Pre-publication.** A key becomes active only after it has been in the JWKS for at least
  ``jwks_max_age``: by then every verifier's cached JWKS holds it, so no fresh statement is
  ever signed by a key a verifier has not seen. ``--force`` overrides this in an emergency.
- **Retirement by need.** A retired key stays published until the latest ``exp`` of any
  statement it signed (from the audit records) plus ``key_grace_period``; then it expires by
  itself. No unexpired statement loses its key through rotation.
- **Honest caching.** The JWKS ``Cache-Control: max-age`` never runs past the next change the
  issuer already knows about (a retired key's removal, a scheduled rotation).
- **Historical keys.** Every key that ever signed is listed in a signed ``jwk-set+jwt``
  (OpenID Federation 1.0, Federation Historical Keys) with ``exp`` and, when revoked,
  ``revoked: {revoked_at, reason}``, so a verifier can tell superseded from compromised.

Every transition is an audit event with its time, actor and channel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from issuer.core.clock import Clock, rfc3339
from issuer.core.config import Config, normalize_alg
from issuer.core.encoding import canonical_json
from issuer.core.errors import Conflict, IssuerError, KeystoreError, UsageError
from issuer.keys.backends.jws import public_only
from issuer.keys.keystore import KeyInfo, Keystore
from issuer.store.audit import AuditStore

#: RFC 5280 section 5.3.1 reason codes that OpenID Federation's historical keys carry.
REVOCATION_REASONS = ("unspecified", "compromised", "superseded")
HISTORICAL_KEYS_TYPE = "jwk-set+jwt"


def not_ready(next_key: KeyInfo, eligible_at: int, now: int, max_age: int) -> Conflict:
    published_for = now - (next_key.published_at or next_key.created_at)
    return Conflict(
        f"rotation refused: next key {next_key.kid} has been published for {published_for}s "
        f"but verifiers may cache the JWKS for {max_age}s; it can sign from "
        f"{rfc3339(eligible_at)} (use --wait, or --force in an emergency)")


class KeyLifecycle:
    """Key state changes and what verifiers see, over the keystore and the audit records."""

    def __init__(self, keystore: Keystore, audit: Callable[[], AuditStore], config: Config,
                 clock: Clock, sleep: Callable[[float], None] = time.sleep) -> None:
        self.keystore = keystore
        self._audit = audit
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self._logged: tuple[tuple[Any, ...], dict[str, tuple[str, dict[str, Any]]]] | None = None
        # (keyring stamp, good until, token): the signed historical keys document
        self._historical: tuple[tuple[int, int, int], int, str] | None = None

    @property
    def audit(self) -> AuditStore:
        return self._audit()

    def now(self) -> int:
        return int(self.clock.now())

    # --- reading -------------------------------------------------------------------------

    def by_state(self, state: str) -> list[KeyInfo]:
        return [k for k in self.keystore.keys() if k.state == state]

    def latest_exp(self, kid: str) -> int | None:
        """The latest ``exp`` of any statement ``kid`` signed (audit records)."""
        rows = self.audit.query("SELECT MAX(exp) AS e FROM statements WHERE kid = ?", (kid,))
        value = rows[0]["e"] if rows else None
        return int(value) if value is not None else None

    def retention_deadline(self, key: KeyInfo) -> int | None:
        """Until when a retired key stays published: its last statement's exp + grace."""
        if key.state != "retired":
            return None
        retired_at = key.retired_at or key.created_at
        return max(self.latest_exp(key.kid) or retired_at, retired_at) + \
            self.config.key_grace_period

    # --- the keyring against the logged key events ---------------------------------------

    #: The key events, oldest first (their type range uses the index on ``type``).
    _KEY_EVENTS = "FROM events WHERE type >= 'key.' AND type < 'key/'"

    def stamp(self) -> tuple[Any, ...]:
        """Changes whenever the keyring or the committed key events do: what the JWKS depends
        on (a keyring written before its events commit is seen again once they have). Read on
        the store's read-only connection, so serving never waits for a writer."""
        last = self.audit.read(f"SELECT MAX(idx) {self._KEY_EVENTS}")
        return (self.keystore.stamp(), last[0][0] if last else None)

    def logged_keys(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every key the audit log knows: its state after its last committed key event, and
        the public JWK its ``key.generated`` event recorded (cached until either changes)."""
        stamp = self.stamp()
        if self._logged is not None and self._logged[0] == stamp:
            return self._logged[1]
        logged: dict[str, tuple[str, dict[str, Any]]] = {}
        for kind, text in self.audit.read(f"SELECT type, data {self._KEY_EVENTS} ORDER BY idx"):
            data = json.loads(text)
            kid, state = data.get("kid"), data.get("state")
            if not isinstance(kid, str) or not isinstance(state, str):
                continue
            if kind == "key.generated":
                logged[kid] = (state, public_only(data.get("jwk") or {}))
            elif kid in logged:
                logged[kid] = (state, logged[kid][1])
        self._logged = (stamp, logged)
        return logged

    def keyring_problems(self) -> list[str]:
        """Where the keyring's public state differs from what the key events logged: a key
        added by hand, a revoked key un-revoked, a public key swapped. Such keys are not
        served (:meth:`published`) until the keyring is restored."""
        logged = self.logged_keys()
        problems = [problem for key in self.keystore.keys()
                    if (problem := self._mismatch(key, logged)) is not None]
        kept = {k.kid for k in self.keystore.keys()}
        problems += [f"key {kid} ({state} in the audit log) is missing from the keyring"
                     for kid, (state, _) in logged.items() if kid not in kept]
        return problems

    @staticmethod
    def _mismatch(key: KeyInfo, logged: dict[str, tuple[str, dict[str, Any]]]) -> str | None:
        entry = logged.get(key.kid)
        if entry is None:
            return (f"key {key.kid} is in the keyring but no key event logs it (added by "
                    "hand?); it is not served")
        if entry[0] != key.state:
            return (f"key {key.kid} is {key.state} in the keyring but {entry[0]} in the audit "
                    "log; it is not served")
        if entry[1] != public_only(key.public_jwk):
            return f"key {key.kid}: the keyring's public key is not the one logged; not served"
        if set(key.public_jwk) != set(entry[1]):
            return (f"key {key.kid}: the keyring entry carries members a public key has not "
                    f"({', '.join(sorted(set(key.public_jwk) - set(entry[1])))}); they are "
                    "never served")
        return None

    def trusted(self) -> list[KeyInfo]:
        """The keyring's keys whose state and public key the audit log agrees with."""
        logged = self.logged_keys()
        return [k for k in self.keystore.keys()
                if (entry := logged.get(k.kid)) is not None and entry[0] == k.state
                and entry[1] == public_only(k.public_jwk)]

    # --- publishing ------------------------------------------------------------------------

    def published(self, now: int | None = None) -> list[KeyInfo]:
        """Keys a verifier may need now, the active one first (RFC 7517 section 5 order is
        free; active first helps verifiers that try keys in order). Only keys whose state
        the audit log agrees with: a key slipped into the keyring is never served."""
        now = self.now() if now is None else now
        order = {"active": 0, "next": 1, "retired": 2}
        keys = []
        for key in self.trusted():
            if key.state in ("active", "next"):
                keys.append(key)
            elif key.state == "retired":
                deadline = self.retention_deadline(key)
                if deadline is not None and now < deadline:
                    keys.append(key)
        return sorted(keys, key=lambda k: order[k.state])

    def jwks(self, now: int | None = None) -> dict[str, Any]:
        """The public JWK Set: no private member, no revoked or expired key."""
        return {"keys": [k.jwk() for k in self.published(now)]}

    def rotation_due_at(self) -> int | None:
        active = self.by_state("active")
        if self.config.rotation_period is None or not active:
            return None
        return (active[0].activated_at or active[0].created_at) + self.config.rotation_period

    def next_change(self, now: int | None = None) -> int | None:
        """The next time the JWKS will change that the issuer already knows about."""
        now = self.now() if now is None else now
        times = [d for k in self.by_state("retired")
                 if (d := self.retention_deadline(k)) is not None and d > now]
        due = self.rotation_due_at()
        if due is not None:
            times.append(max(due, now))
        return min(times) if times else None

    def max_age(self, now: int | None = None) -> int:
        """``jwks_max_age``, cut short so no cache outlives a known change."""
        now = self.now() if now is None else now
        change = self.next_change(now)
        limit = self.config.service.jwks_max_age
        return limit if change is None else max(0, min(limit, change - now))

    # --- changing ------------------------------------------------------------------------

    def _event(self, key: KeyInfo, event: str, actor: str, channel: str, now: int,
               **extra: Any) -> None:
        self.audit.append_event(time=now, type=event, actor=actor, channel=channel,
                                subject=key.kid, data={"kid": key.kid, "alg": key.alg,
                                                       "state": key.state, **extra})

    def generate(self, alg: str | None = None, *, activate: bool = False, actor: str,
                 channel: str, rsa_bits: int | None = None) -> KeyInfo:
        """A new key: active when there is none, otherwise ``next``, superseding (revoking)
        the next key that was waiting. ``activate`` makes it sign at once (a forced rotation
        onto this key, audited as such)."""
        alg = normalize_alg(alg or self.config.default_alg)
        now = self.now()
        current = self.by_state("active")
        # One next key at a time: a new one supersedes the one waiting (it never signed);
        # an activated one retires the active key in the same keyring write.
        if current and activate:
            changed = [replace(current[0], state="retired", retired_at=now)]
        else:
            changed = [replace(k, state="revoked", revoked_at=now,
                               revocation_reason="superseded")
                       for k in self.by_state("next")] if current else []
        options = {"rsa_bits": rsa_bits} if rsa_bits else {}
        with self.audit.transaction():
            key = self.keystore.generate(alg, state="active" if activate or not current
                                         else "next", now=now, replacing=changed, **options)
            self._event(key, "key.generated", actor, channel, now, jwk=key.jwk())
            for old in changed:
                self._event(old, f"key.{old.state}", actor, channel, now,
                            **({"reason": "superseded"} if old.state == "revoked" else {}))
            if current and activate:
                self._event(key, "key.activated", actor, channel, now, forced=True,
                            published_for=0)
        return key

    def ensure_next(self, *, actor: str, channel: str) -> KeyInfo:
        """The pre-published key that will sign next, generated when there is none."""
        existing = self.by_state("next")
        return existing[0] if existing else self.generate(actor=actor, channel=channel)

    def _switch(self, old: KeyInfo | None, new: KeyInfo, now: int, actor: str, channel: str,
                *, forced: bool) -> KeyInfo:
        """``new`` signs from now on; ``old`` (if any) retires. One keyring write, made only
        once ``new`` has shown that it signs (a key that can't sign is never activated)."""
        try:
            self.keystore.check_signs(new)
        except KeystoreError as exc:
            raise KeystoreError(f"refusing to activate key {new.kid}: {exc.description}"
                                ) from None
        active = replace(new, state="active", activated_at=now)
        changed = [active]
        if old is not None:
            retired = replace(old, state="retired", retired_at=now)
            changed.insert(0, retired)
            self._event(retired, "key.retired", actor, channel, now)
        self.keystore.replace_all(changed)
        self._event(active, "key.activated", actor, channel, now, forced=forced,
                    published_for=now - (new.published_at or new.created_at))
        return active

    def _generate_next(self, now: int, actor: str, channel: str) -> KeyInfo:
        """A new pre-published key, inside the caller's transaction."""
        key = self.keystore.generate(self.config.default_alg, state="next", now=now)
        self._event(key, "key.generated", actor, channel, now, jwk=key.jwk())
        return key

    def eligible_at(self, key: KeyInfo) -> int:
        """When a ``next`` key has been published long enough to sign."""
        return (key.published_at or key.created_at) + self.config.service.jwks_max_age

    def rotate(self, *, actor: str, channel: str, force: bool = False,
               wait: bool = False) -> KeyInfo:
        """Make the ``next`` key active, retire the active one, pre-publish a new ``next``."""
        active = self._rotate(actor=actor, channel=channel, force=force, wait=wait, due=None)
        assert active is not None  # only a scheduled rotation can find nothing to do
        return active

    def _rotate(self, *, actor: str, channel: str, force: bool, wait: bool,
                due: int | None) -> KeyInfo | None:
        nxt = self.ensure_next(actor=actor, channel=channel)
        eligible = self.eligible_at(nxt)
        while not force and self.now() < eligible:
            if not wait:
                raise not_ready(nxt, eligible, self.now(), self.config.service.jwks_max_age)
            self.sleep(min(5.0, eligible - self.clock.now()))
        now = self.now()
        with self.audit.transaction():
            # Under the write lock, which every replica takes in turn: a scheduled rotation
            # that another replica has done meanwhile (the due time moved) is not done twice.
            if due is not None and self.rotation_due_at() != due:
                return None
            current = self.by_state("active")
            active = self._switch(current[0] if current else None, nxt, now, actor, channel,
                                  forced=force and now < eligible)
            self._generate_next(now, actor, channel)
        return active

    def rotate_if_due(self, *, actor: str, channel: str) -> KeyInfo | None:
        """Rotate when ``rotation_period`` has passed and the next key may sign; else None."""
        due = self.rotation_due_at()
        if due is None or self.now() < due:
            return None
        nxt = self.ensure_next(actor=actor, channel=channel)
        if self.now() < self.eligible_at(nxt):
            return None  # scheduled rotation never forces; it waits for pre-publication
        return self._rotate(actor=actor, channel=channel, force=False, wait=False, due=due)

    def expire_due(self, *, actor: str, channel: str) -> list[KeyInfo]:
        """Retired keys past their retention deadline leave the JWKS for good."""
        now = self.now()
        expired = []
        for key in self.by_state("retired"):
            deadline = self.retention_deadline(key)
            if deadline is not None and now >= deadline:
                expired.append(replace(key, state="expired", expired_at=now))
        if expired:
            with self.audit.transaction():
                self.keystore.replace_all(expired)
                for key in expired:
                    self._event(key, "key.expired", actor, channel, now)
        return expired

    def maintain(self, *, actor: str = "issuer", channel: str = "scheduler") -> list[str]:
        """What a scheduler runs: rotate when due, expire what is past its deadline."""
        done = []
        rotated = self.rotate_if_due(actor=actor, channel=channel)
        if rotated is not None:
            done.append(f"rotated: {rotated.kid} is now active")
        done += [f"expired: {k.kid}" for k in self.expire_due(actor=actor, channel=channel)]
        return done

    def revoke(self, kid: str, reason: str, *, actor: str, channel: str,
               force: bool = False) -> tuple[KeyInfo, int]:
        """Withdraw a key from the JWKS at once. Revoking the signing key needs ``force``;
        the ``next`` key then signs at once. Returns the key and how many statements it signed."""
        if reason not in REVOCATION_REASONS:
            raise UsageError(f"reason {reason!r} is not one of {', '.join(REVOCATION_REASONS)}")
        key = self.keystore.get(kid)
        if key.state in ("revoked", "expired"):
            raise Conflict(f"key {kid} is already {key.state}")
        if key.state == "active" and not force:
            raise Conflict(f"key {kid} is the only key that signs; revoking it activates the "
                           "next key at once, before every verifier may have fetched it: use "
                           "--force to do so")
        self.keystore.ready()  # a new next key may be needed: nothing is written if it can't
        now = self.now()
        with self.audit.transaction():
            revoked = replace(key, state="revoked", revoked_at=now, revocation_reason=reason)
            self.keystore.replace_all([revoked])
            self._event(revoked, "key.revoked", actor, channel, now, reason=reason)
            if key.state == "active":
                nxt = self.by_state("next") or [self._generate_next(now, actor, channel)]
                self._switch(None, nxt[0], now, actor, channel, forced=True)
            if not self.by_state("next"):
                self._generate_next(now, actor, channel)
        signed = len(self.audit.statements(kid=kid))
        return self.keystore.get(kid), signed

    # --- history ---------------------------------------------------------------------------

    def verifier_exp(self, key: KeyInfo, now: int) -> int:
        """Until when a verifier may use ``key`` for statements it signed."""
        if key.state == "revoked":
            return key.revoked_at or now
        if key.state == "expired":
            return key.expired_at or now
        deadline = self.retention_deadline(key)
        if deadline is not None:
            return deadline
        # active (or next): the latest statement it could still sign would need it this long
        until = self.rotation_due_at() if key.state == "active" else None
        start = max(until or now, now)
        return start + self.config.max_lifetime + self.config.key_grace_period

    def history(self) -> list[dict[str, Any]]:
        """Every key with its times and how many statements it signed."""
        usage = self.audit.statement_counts_by_kid()
        now = self.now()
        rows = []
        for key in self.keystore.keys():
            rows.append({
                "kid": key.kid, "alg": key.alg, "state": key.state,
                "created_at": key.created_at, "published_at": key.published_at,
                "activated_at": key.activated_at, "retired_at": key.retired_at,
                "expired_at": key.expired_at, "revoked_at": key.revoked_at,
                "revocation_reason": key.revocation_reason,
                "published_until": self.retention_deadline(key),
                "verifier_exp": self.verifier_exp(key, now),
                "statements": usage.get(key.kid, 0),
            })
        return rows

    def historical_keys(self) -> dict[str, Any]:
        """The claims of the historical keys document: every key that ever signed."""
        now = self.now()
        keys = []
        for key in self.trusted():
            if key.activated_at is None:
                continue  # a key that never signed has no history to prove
            entry = {**key.jwk(), "iat": key.activated_at, "exp": self.verifier_exp(key, now)}
            if key.state == "revoked":
                entry["revoked"] = {"revoked_at": key.revoked_at,
                                    "reason": key.revocation_reason or "unspecified"}
            keys.append(entry)
        return {"iss": self.config.issuer, "iat": now, "keys": keys}

    def historical_keys_jwt(self) -> str:
        """The historical keys document, signed by the active key (``typ: jwk-set+jwt``).

        Signed once and kept while the keyring is unchanged (every key event rewrites it) and
        no older than the cache lifetime verifiers are told (``max_age``): a public route must
        not make the key sign on every request."""
        now, stamp = self.now(), self.keystore.stamp()
        cached = self._historical
        if cached is not None and cached[0] == stamp and now < cached[1]:
            return cached[2]
        payload = canonical_json(self.historical_keys())
        token = self.keystore.signer().sign(payload, typ=HISTORICAL_KEYS_TYPE)
        self._historical = (stamp, now + self.max_age(now), token)
        return token
