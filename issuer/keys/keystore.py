"""The file keystore: signing keys as PKCS#8 PEM files plus a keyring of their states.

Layout of ``keys_dir`` (mode 0700):

- ``<kid>.pem``: the private key, PKCS#8 PEM, mode 0600, encrypted when
  ``ISSUER_KEY_PASSPHRASE`` is set. ``kid`` is the RFC 7638 SHA-256 thumbprint of the public key.
- ``keyring.json``: every key's public JWK, algorithm, state and timestamps (no secrets).

Private key bytes never leave this module: callers get :class:`KeyInfo` value objects and,
to sign, a :class:`Signer` whose key is not exposed. A key file that group or others can read
is refused, as ssh refuses one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey, OKPKey, RSAKey

from issuer.core.config import normalize_alg
from issuer.core.encoding import b64url, jwk_thumbprint
from issuer.core.errors import KeystoreError, NotFound
from issuer.core.files import atomic_write
from issuer.log.note import NoteError, NoteSigner, NoteVerifier

KeyState = Literal["next", "active", "retired", "revoked", "expired"]
KEYRING = "keyring.json"
#: The transparency log's own Ed25519 key (C2SP signed-note), apart from statement keys.
LOG_KEY = "log.pem"
LOG_META = "log.json"
MIN_RSA_BITS = 2048
DEFAULT_RSA_BITS = 3072
PASSPHRASE_ENV = "ISSUER_KEY_PASSPHRASE"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
JoseKey = ECKey | RSAKey | OKPKey


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

    def jwk(self) -> dict[str, Any]:
        """The public JWK as published: key members plus ``kid``, ``alg`` and ``use``."""
        return {**self.public_jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


class Signer:
    """Signs compact JWS (RFC 7515 section 7.1) with one key. The private key stays inside.

    The protected header is fixed per key (``alg`` and ``kid`` from the keystore, never from a
    caller), so its encoding is computed once; each signature then costs one base64 of the
    payload and one private-key operation. Signatures are in JWS form (RFC 7518 section 3):
    ECDSA as raw ``r || s``, RSASSA-PSS with a salt as long as the hash.
    """

    __slots__ = ("kid", "alg", "_key", "_prefixes")

    def __init__(self, kid: str, alg: str, key: PrivateKey) -> None:
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

    def sign(self, payload: bytes, typ: str = "JWT") -> str:
        """The compact JWS of ``payload`` with header ``{alg, kid, typ}``."""
        signing_input = self._prefix(typ) + b64url(payload)
        return signing_input + "." + b64url(_sign(self.alg, self._key, signing_input.encode()))

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid!r}, alg={self.alg!r})"


_HASHES: dict[str, type[hashes.SHA256] | type[hashes.SHA384]] = {
    "ES256": hashes.SHA256, "ES384": hashes.SHA384, "RS256": hashes.SHA256, "PS256": hashes.SHA256}


def _sign(alg: str, key: PrivateKey, data: bytes) -> bytes:
    """The JWS signature value of ``data`` (RFC 7518 sections 3.3-3.5, RFC 8037 section 3.1)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    digest = _HASHES[alg]()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "PS256":
        return key.sign(data, padding.PSS(mgf=padding.MGF1(digest),
                                          salt_length=digest.digest_size), digest)
    return key.sign(data, padding.PKCS1v15(), digest)


def _generate_private(alg: str, rsa_bits: int) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg in ("RS256", "PS256"):
        if rsa_bits < MIN_RSA_BITS:
            raise KeystoreError(f"RSA keys need at least {MIN_RSA_BITS} bits, not {rsa_bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if alg == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise KeystoreError(f"unsupported algorithm {alg!r}")


def _jose_key(private: PrivateKey) -> JoseKey:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(private)
    if isinstance(private, rsa.RSAPrivateKey):
        return RSAKey.import_key(private)
    return OKPKey.import_key(private)


def _alg_fits_key(alg: str, private: PrivateKey) -> bool:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return (alg, private.curve.name) in (("ES256", "secp256r1"), ("ES384", "secp384r1"))
    if isinstance(private, rsa.RSAPrivateKey):
        return alg in ("RS256", "PS256") and private.key_size >= MIN_RSA_BITS
    return alg == "Ed25519"


class Keystore:
    """A directory of private keys and the keyring describing them."""

    def __init__(self, directory: Path, passphrase: str | None = None) -> None:
        self.directory = directory
        self._passphrase = passphrase.encode("utf-8") if passphrase else None
        self._signers: dict[str, tuple[tuple[int, int], Signer]] = {}
        self._keys_cache: tuple[tuple[int, int, int], list[KeyInfo]] | None = None

    # --- keyring ---------------------------------------------------------------------

    @property
    def _keyring(self) -> Path:
        return self.directory / KEYRING

    def keys(self) -> list[KeyInfo]:
        """Every key the keyring knows, in creation order (re-read when the file changes)."""
        try:
            st = os.stat(self._keyring)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeystoreError(f"cannot read {self._keyring}: {exc.strerror}") from None
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
    def transaction(self) -> Iterator[list[KeyInfo]]:
        """Lock the keyring, hand out its keys for editing, then write it back atomically."""
        self._ensure_directory()
        fd = os.open(self.directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                keys = self.keys()
                yield keys
                self._check_invariants(keys)
                self._write_keyring(keys)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _check_invariants(self, keys: list[KeyInfo]) -> None:
        actives = [k.kid for k in keys if k.state == "active"]
        if len(actives) > 1:
            raise KeystoreError(f"refusing to write a keyring with {len(actives)} active keys")

    def _write_keyring(self, keys: list[KeyInfo]) -> None:
        body = json.dumps({"version": 1, "keys": [asdict(k) for k in keys]}, indent=2)
        atomic_write(self._keyring, body.encode("utf-8"), mode=0o600)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    # --- keys ------------------------------------------------------------------------

    def generate(self, alg: str, *, state: KeyState, now: int,
                 rsa_bits: int = DEFAULT_RSA_BITS) -> KeyInfo:
        """Create a key pair, store it 0600, and add it to the keyring in ``state``."""
        alg = normalize_alg(alg)
        private = _generate_private(alg, rsa_bits)
        public_jwk = _jose_key(private).as_dict(private=False)
        kid = jwk_thumbprint(public_jwk)
        pem = self._pem(private)
        info = KeyInfo(kid=kid, alg=alg, state=state, created_at=now,
                       public_jwk=dict(sorted(public_jwk.items())), published_at=now,
                       activated_at=now if state == "active" else None)
        with self.transaction() as keys:
            atomic_write(self.directory / f"{kid}.pem", pem, mode=0o600)
            keys.append(info)
        return info

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
        """A signer for ``kid`` (default: the active key), loading its file once."""
        info = self.active() if kid is None else self.get(kid)
        path = self.directory / f"{info.kid}.pem"
        st = self._safe_stat(path)
        cached = self._signers.get(info.kid)
        if cached and cached[0] == (st.st_mtime_ns, st.st_ino) and cached[1].alg == info.alg:
            return cached[1]
        private = self._load_private(path, info)
        signer = Signer(info.kid, info.alg, private)
        self._signers[info.kid] = ((st.st_mtime_ns, st.st_ino), signer)
        return signer

    def _safe_stat(self, path: Path) -> os.stat_result:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise KeystoreError(f"key file {path} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeystoreError(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeystoreError(
                f"refusing key file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets group or "
                f"others read it; run chmod 600 {path}")
        if st.st_uid != os.getuid():
            raise KeystoreError(f"refusing key file {path}: owned by another user")
        return st

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
        with self.transaction():
            atomic_write(self.directory / LOG_KEY, self._pem(private), mode=0o600)
            meta = {"origin": origin, "verifier_key": verifier.verifier_key()}
            atomic_write(self.directory / LOG_META, json.dumps(meta, indent=2).encode(), mode=0o600)
        return verifier

    def log_signer(self) -> NoteSigner:
        """The log key, to sign checkpoints; checked against its published verifier key."""
        verifier = self.log_verifier()
        if verifier is None:
            raise KeystoreError(f"the log has no key in {self.directory}")
        private = self._read_private(self.directory / LOG_KEY)
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise KeystoreError(f"{self.directory / LOG_KEY} is not an Ed25519 key")
        signer = NoteSigner(verifier.name, private)
        if signer.verifier_key() != verifier.verifier_key():
            raise KeystoreError(f"{self.directory / LOG_KEY} does not match {LOG_META}")
        return signer

    def _pem(self, private: PrivateKey) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase else serialization.NoEncryption()
        )
        return private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8, encryption)

    def _read_private(self, path: Path) -> PrivateKey:
        self._safe_stat(path)
        data = path.read_bytes()
        try:
            private = serialization.load_pem_private_key(data, password=self._passphrase)
        except TypeError:
            if self._passphrase is None:
                raise KeystoreError(f"key file {path} is encrypted; set {PASSPHRASE_ENV}") from None
            raise KeystoreError(f"key file {path} is not encrypted but {PASSPHRASE_ENV} is "
                                "set; unset it or re-encrypt the key") from None
        except ValueError:
            raise KeystoreError(f"cannot load key file {path}: wrong {PASSPHRASE_ENV} or a "
                                "damaged file") from None
        if not isinstance(private, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                                    ed25519.Ed25519PrivateKey)):
            raise KeystoreError(f"key file {path} holds an unsupported key type")
        return private

    def _load_private(self, path: Path, info: KeyInfo) -> PrivateKey:
        private = self._read_private(path)
        # A swapped file must not sign under another key's kid.
        if jwk_thumbprint(_jose_key(private).as_dict(private=False)) != info.kid:
            raise KeystoreError(f"key file {path} does not hold the key {info.kid}")
        if not _alg_fits_key(info.alg, private):
            raise KeystoreError(f"key {info.kid} can't sign {info.alg}")
        return private
