"""The keystore: the keyring of every signing key's public state, over a key backend.

Layout of ``keys_dir`` (mode 0700, checked on every load):

- ``keyring.json``: every key's public JWK, algorithm, state, timestamps and where its backend
  finds it (``key_ref``); no secret. ``kid`` is the RFC 7638 SHA-256 thumbprint of the public key.
- with the ``file`` backend, ``<kid>.pem``: the private key (backends/file.py).
- ``log.pem`` / ``log.json``: the transparency log's own Ed25519 key and its verifier key.

Private keys live in the backend (files, a PKCS#11 token, a cloud KMS) and never leave it:
callers get :class:`KeyInfo` value objects and, to sign, a :class:`Signer` that asks the backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ed25519

from issuer.core.config import normalize_alg
from issuer.core.encoding import b64url, jwk_thumbprint
from issuer.core.errors import KeystoreError, NotFound
from issuer.core.files import atomic_write
from issuer.keys.backends import BackendKey, KeyBackend
from issuer.keys.backends.file import (
    PASSPHRASE_ENV,
    FileBackend,
    Passphrase,
    encode_private,
    read_private,
)
from issuer.keys.backends.jws import alg_fits, public_only, verify_signature
from issuer.log.note import NoteError, NoteSigner, NoteVerifier

__all__ = ["PASSPHRASE_ENV", "KeyInfo", "Keystore", "Signer"]

KeyState = Literal["next", "active", "retired", "revoked", "expired"]
KEYRING = "keyring.json"
#: The transparency log's own Ed25519 key (C2SP signed-note), apart from statement keys.
LOG_KEY = "log.pem"
LOG_META = "log.json"
DEFAULT_RSA_BITS = 3072
#: What a key signs to show it can, before it is ever made to sign statements.
PROBE = b"issuer key check"


@dataclass(frozen=True)
class KeyInfo:
    """What anyone may know about a signing key: never the private part."""

    kid: str
    alg: str
    state: KeyState
    created_at: int
    public_jwk: dict[str, Any] = field(repr=False)
    published_at: int | None = None  # when it entered the JWKS
    activated_at: int | None = None
    retired_at: int | None = None
    revoked_at: int | None = None
    revocation_reason: str | None = None
    expired_at: int | None = None
    #: Where the backend finds the private key (None: the file ``<kid>.pem``).
    key_ref: str | None = None

    def jwk(self) -> dict[str, Any]:
        """The public JWK as published: the public members only (whatever the keyring file
        holds), plus ``kid``, ``alg`` and ``use``."""
        return {**public_only(self.public_jwk), "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def ref(self) -> str:
        return self.key_ref or f"{self.kid}.pem"


class Signer:
    """Signs compact JWS (RFC 7515 section 7.1) with one key; the private key stays in its
    backend.

    The protected header is fixed per key (``alg`` and ``kid`` from the keystore, never from a
    caller), so its encoding is computed once; each signature then costs one base64 of the
    payload and one backend signature, already in JWS form (RFC 7518 section 3).
    """

    __slots__ = ("kid", "alg", "_key", "_prefixes")

    def __init__(self, kid: str, alg: str, key: BackendKey) -> None:
        self.kid = kid
        self.alg = alg
        self._key = key
        self._prefixes: dict[str, str] = {}

    def _prefix(self, typ: str) -> str:
        prefix = self._prefixes.get(typ)
        if prefix is None:
            header = {"alg": self.alg, "kid": self.kid, "typ": typ}
            prefix = b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
            self._prefixes[typ] = prefix
        return prefix

    @property
    def forkable(self) -> bool:
        """Whether a forked worker process may sign with this signer's key."""
        return self._key.forkable

    def sign(self, payload: bytes, typ: str = "JWT") -> str:
        """The compact JWS of ``payload`` with header ``{alg, kid, typ}``."""
        signing_input = self._prefix(typ) + b64url(payload)
        return signing_input + "." + b64url(self._key.sign(signing_input.encode()))

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r}, alg={self.alg!r})"


class Keystore:
    """The keyring of ``directory`` and the backend holding the private keys it describes."""

    def __init__(self, directory: Path, passphrase: str | Passphrase | None = None,
                 backend: KeyBackend | None = None) -> None:
        self.directory = directory
        if not isinstance(passphrase, Passphrase):
            passphrase = Passphrase.of(passphrase)
        # The log key (and, with the file backend, every key) is a file under this passphrase.
        self.files = backend if isinstance(backend, FileBackend) else \
            FileBackend(directory, passphrase)
        self.backend: KeyBackend = backend or self.files
        self._signers: dict[str, tuple[BackendKey, Signer]] = {}
        self._keys_cache: tuple[tuple[int, int, int], list[KeyInfo]] | None = None

    # --- keyring ---------------------------------------------------------------------

    @property
    def _keyring(self) -> Path:
        return self.directory / KEYRING

    def check_directory(self) -> None:
        """Refuse a keys directory that group or others may enter, list or change."""
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            return
        if st.st_mode & 0o077:
            raise KeystoreError(f"refusing keys directory {self.directory}: mode "
                                f"{stat.S_IMODE(st.st_mode):04o} lets group or others in; run "
                                f"chmod 700 {self.directory}")

    def keys(self) -> list[KeyInfo]:
        """Every key the keyring knows, in creation order (re-read when the file changes)."""
        self.check_directory()
        try:
            st = os.lstat(self._keyring)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeystoreError(f"cannot read {self._keyring}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeystoreError(f"refusing {self._keyring}: not a regular file (a symbolic link?)")
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        cached = self._keys_cache
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        try:
            data = json.loads(self._keyring.read_bytes())
            keys = [KeyInfo(**entry) for entry in data["keys"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError):
            raise KeystoreError(f"{self._keyring} is damaged (not a keyring)") from None
        self._keys_cache = (stamp, keys)
        return list(keys)

    def stamp(self) -> tuple[int, int, int]:
        """Changes whenever the keyring does: lets readers cache what they derive from it."""
        try:
            st = os.stat(self._keyring)
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def get(self, kid: str) -> KeyInfo:
        for key in self.keys():
            if key.kid == kid:
                return key
        raise NotFound(f"no key with kid {kid!r} in {self.directory}")

    def active(self) -> KeyInfo:
        """The one key that signs."""
        actives = [k for k in self.keys() if k.state == "active"]
        if not actives:
            raise KeystoreError(f"no active signing key in {self.directory}; run "
                                "`issuer keys generate`")
        return actives[0]

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise the writers of this keystore (CLI and service alike)."""
        self._ensure_directory()
        fd = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[list[KeyInfo]]:
        """Lock the keyring, hand out its keys for editing, then write it back atomically."""
        with self.lock():
            keys = self.keys()
            yield keys
            self._check_invariants(keys)
            self._write_keyring(keys)

    def _check_invariants(self, keys: list[KeyInfo]) -> None:
        for state in ("active", "next"):
            found = [k.kid for k in keys if k.state == state]
            if len(found) > 1:
                raise KeystoreError(f"refusing to write a keyring with {len(found)} {state} keys")

    def _write_keyring(self, keys: list[KeyInfo]) -> None:
        body = json.dumps({"version": 1, "keys": [asdict(k) for k in keys]}, indent=2)
        atomic_write(self._keyring, body.encode("utf-8"), mode=0o600)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    # --- keys ------------------------------------------------------------------------

    def generate(self, alg: str, *, state: KeyState, now: int,
                 rsa_bits: int = DEFAULT_RSA_BITS, replacing: Sequence[KeyInfo] = ()) -> KeyInfo:
        """Create a key pair inside the backend and add it to the keyring in ``state``, in the
        same keyring write as ``replacing`` (other keys' new states).

        The backend is checked first (the passphrase opens the keys already there), so a
        wrong passphrase writes nothing; a new key joins the keyring only once it has signed."""
        alg = normalize_alg(alg)
        if alg not in self.backend.algs:
            raise KeystoreError(f"the {self.backend.scheme} key backend can't make {alg} keys "
                                f"(it makes {', '.join(self.backend.algs)})")
        self.ready()
        new = self.backend.generate(alg, rsa_bits=rsa_bits)
        kid = jwk_thumbprint(new.public_jwk)
        info = KeyInfo(kid=kid, alg=alg, state=state, created_at=now,
                       public_jwk=public_only(new.public_jwk), published_at=now,
                       activated_at=now if state == "active" else None,
                       key_ref=None if new.ref == f"{kid}.pem" else new.ref)
        self.check_signs(info)
        changed = {k.kid: k for k in replacing}
        with self.transaction() as keys:
            keys[:] = [changed.get(k.kid, k) for k in keys] + [info]
        return info

    def ready(self) -> None:
        """Check, before a change writes anything, that the directory is safe and the backend
        usable (the passphrase opens the keys there, the token answers, KMS is reachable)."""
        self.check_directory()
        with self.lock():
            self.backend.ready()

    def update(self, kid: str, **changes: Any) -> KeyInfo:
        """Change one key's state or timestamps (the caller records the audit event)."""
        with self.transaction() as keys:
            for i, key in enumerate(keys):
                if key.kid == kid:
                    keys[i] = replace(key, **changes)
                    return keys[i]
        raise NotFound(f"no key with kid {kid!r} in {self.directory}")

    def replace_all(self, changed: list[KeyInfo]) -> None:
        """Write several keys' new states at once (a rotation is one atomic change)."""
        by_kid = {k.kid: k for k in changed}
        with self.transaction() as keys:
            keys[:] = [by_kid.get(k.kid, k) for k in keys]

    def signer(self, kid: str | None = None) -> Signer:
        """A signer for ``kid`` (default: the active key). The backend's key must be the one
        the keyring files under that kid, for that algorithm: a swapped key never signs."""
        info = self.active() if kid is None else self.get(kid)
        key = self.backend.key(info.ref, info.alg)
        cached = self._signers.get(info.kid)
        if cached and cached[0] is key and cached[1].alg == info.alg:
            return cached[1]
        jwk = key.public_jwk()
        if jwk_thumbprint(jwk) != info.kid:
            raise KeystoreError(f"{info.ref} in {self.backend.describe()} does not hold the "
                                f"key {info.kid}")
        if not alg_fits(info.alg, jwk):
            raise KeystoreError(f"key {info.kid} can't sign {info.alg}")
        signer = Signer(info.kid, info.alg, key)
        self._signers[info.kid] = (key, signer)
        return signer

    def check_signs(self, info: KeyInfo) -> None:
        """Show that ``info`` can sign now: its backend key signs, and the signature verifies
        with the public key the keyring publishes under its kid. Raises KeystoreError."""
        if jwk_thumbprint(info.public_jwk) != info.kid:
            raise KeystoreError(f"key {info.kid}: its public key in the keyring has another "
                                "thumbprint")
        signature = self.backend.key(info.ref, info.alg).sign(PROBE)
        if not verify_signature(info.alg, info.public_jwk, PROBE, signature):
            raise KeystoreError(f"key {info.kid} can't sign: the {self.backend.describe()} "
                                "key under it does not match its public key")

    # --- the transparency log's key ---------------------------------------------------------

    def log_verifier(self) -> NoteVerifier | None:
        """The log's public note verifier, or None when the log has no key yet."""
        try:
            meta = json.loads((self.directory / LOG_META).read_bytes())
            return NoteVerifier.from_key(meta["verifier_key"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, NoteError):
            raise KeystoreError(f"{self.directory / LOG_META} is damaged") from None

    def create_log_key(self, origin: str) -> NoteVerifier:
        """A new Ed25519 log key named ``origin``; refuses to replace an existing one."""
        if self.log_verifier() is not None:
            raise KeystoreError(f"the log already has a key in {self.directory}")
        private = ed25519.Ed25519PrivateKey.generate()
        verifier = NoteSigner(origin, private).verifier()
        pem = encode_private(private, self.files.passphrase.configured())
        with self.transaction():
            atomic_write(self.directory / LOG_KEY, pem, mode=0o600)
            meta = {"origin": origin, "verifier_key": verifier.verifier_key()}
            atomic_write(self.directory / LOG_META, json.dumps(meta, indent=2).encode(), mode=0o600)
        return verifier

    def log_signer(self) -> NoteSigner:
        """The log key, to sign checkpoints; checked against its published verifier key."""
        verifier = self.log_verifier()
        if verifier is None:
            raise KeystoreError(f"the log has no key in {self.directory}")
        self.files.recover()
        private = read_private(self.directory / LOG_KEY, self.files.passphrase)
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise KeystoreError(f"{self.directory / LOG_KEY} is not an Ed25519 key")
        signer = NoteSigner(verifier.name, private)
        if signer.verifier_key() != verifier.verifier_key():
            raise KeystoreError(f"{self.directory / LOG_KEY} does not match {LOG_META}")
        return signer

    # --- the passphrase ------------------------------------------------------------------------

    def change_passphrase(self, new: str | None) -> list[str]:
        """Re-encrypt every key file here under ``new`` (None: no encryption), all or
        nothing (backends/file.py). Returns the files re-encrypted."""
        with self.lock():
            done = self.files.change_passphrase(new.encode("utf-8") if new else None)
        self._signers.clear()
        return done
