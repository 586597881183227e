"""The ``file`` backend: private keys as PKCS#8 PEM files in ``keys_dir``, safe at rest.

``<kid>.pem``, mode 0600, in a directory of mode 0700. With a passphrase (``ISSUER_KEY_PASSPHRASE``,
``ISSUER_KEY_PASSPHRASE_FILE``, or typed at a terminal prompt) the file is a PKCS#8
``EncryptedPrivateKeyInfo`` (RFC 5958 section 3) under PBES2 (RFC 8018 section 6.2) with the
scrypt KDF (RFC 7914 section 7) and AES-256-CBC: a standard format that ``openssl pkey`` reads.

scrypt cost N=2^14, r=8, p=5 is one of the equivalent settings of the OWASP Password Storage
Cheat Sheet (as strong as N=2^17, p=1) and stays inside OpenSSL's default 32 MiB scrypt memory
limit, so the files remain readable by standard tools. A passphrase shorter than
:data:`MIN_PASSPHRASE` characters is refused for new keys (NIST SP 800-63B-4 section 3.1.1.2).

``issuer keys passphrase`` re-encrypts every key file at once: all are decrypted and the new
files written beside the old ones before a commit marker is written; the renames after it are
rolled forward by whoever finds the marker, so a crash leaves every key under the old
passphrase or every key under the new one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from issuer.core.encoding import jwk_thumbprint
from issuer.core.errors import KeystoreError
from issuer.core.files import atomic_write

from . import BackendKey, KeyBackend, NewKey, Prompt
from .jws import ALGS, MIN_RSA_BITS, jws_signature, public_jwk

PASSPHRASE_ENV = "ISSUER_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "ISSUER_KEY_PASSPHRASE_FILE"
MIN_PASSPHRASE = 15
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 5
#: The PEM label of an encrypted PKCS#8 key (RFC 7468 section 11), which openssl reads.
ENCRYPTED_LABEL = "ENCRYPTED PRIVATE KEY"
#: The commit marker of a passphrase change (see the module docstring).
REKEY_MARKER = "passphrase-change.json"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# --- the passphrase ----------------------------------------------------------------------------


class Passphrase:
    """Where the passphrase comes from: the environment, a file, or a terminal prompt, asked
    at most once and only when an encrypted key must be read."""

    def __init__(self, env: Mapping[str, str], prompt: Prompt | None = None) -> None:
        self._env = env
        self._prompt = prompt
        self._value: bytes | None = None
        self._resolved = False

    @classmethod
    def of(cls, value: str | None) -> Passphrase:
        return cls({PASSPHRASE_ENV: value} if value else {})

    def configured(self) -> bytes | None:
        """The passphrase given in the environment (or typed earlier), None when none is."""
        if not self._resolved:
            self._value = self._from_env()
            self._resolved = True
        return self._value

    def _from_env(self) -> bytes | None:
        value, path = self._env.get(PASSPHRASE_ENV), self._env.get(PASSPHRASE_FILE_ENV)
        if value and path:
            raise KeystoreError(f"set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV}, not both")
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise KeystoreError(f"{PASSPHRASE_FILE_ENV}: cannot read {path}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
            value = text.removesuffix("\n").removesuffix("\r")
            if not value:
                raise KeystoreError(f"{PASSPHRASE_FILE_ENV}: {path} is empty")
        return value.encode("utf-8") if value else None

    def for_reading(self, path: Path) -> bytes:
        """The passphrase to decrypt ``path``: configured, else asked on the terminal."""
        value = self.configured()
        if value is None and self._prompt is not None:
            typed = self._prompt(f"Passphrase for the keys in {path.parent}: ")
            if typed:
                self._value = value = typed.encode("utf-8")
        if value is None:
            raise KeystoreError(f"key file {path} is encrypted; set {PASSPHRASE_ENV} or "
                                f"{PASSPHRASE_FILE_ENV}")
        return value


def check_strength(passphrase: bytes) -> None:
    """Refuse a passphrase too short to protect a key at rest."""
    if len(passphrase.decode("utf-8")) < MIN_PASSPHRASE:
        raise KeystoreError(f"the key passphrase must be at least {MIN_PASSPHRASE} characters")


# --- PKCS#8 with scrypt --------------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else (
        bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return bytes([tag]) + length + body


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    body = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.insert(0, 0x80 | (arc & 0x7F))
        body += bytes(chunk)
    return _der(0x06, bytes(body))


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


PBES2, SCRYPT, AES256_CBC = "1.2.840.113549.1.5.13", "1.3.6.1.4.1.11591.4.11", \
    "2.16.840.1.101.3.4.1.42"


def encrypt_pkcs8(private: PrivateKey, passphrase: bytes) -> bytes:
    """``EncryptedPrivateKeyInfo`` PEM: PBES2, scrypt (RFC 7914 section 7.1), AES-256-CBC."""
    plain = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    salt, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    key = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    params = _seq(_der(0x04, salt), _int(SCRYPT_N), _int(SCRYPT_R), _int(SCRYPT_P), _int(32))
    algorithm = _seq(_oid(PBES2), _seq(_seq(_oid(SCRYPT), params),
                                       _seq(_oid(AES256_CBC), _der(0x04, iv))))
    lines = textwrap.wrap(base64.b64encode(_seq(algorithm, _der(0x04, body))).decode(), 64)
    return (f"-----BEGIN {ENCRYPTED_LABEL}-----\n" + "\n".join(lines) +
            f"\n-----END {ENCRYPTED_LABEL}-----\n").encode()


def encode_private(private: PrivateKey, passphrase: bytes | None) -> bytes:
    """A private key as PKCS#8 PEM, encrypted when there is a passphrase (checked first)."""
    if passphrase is None:
        return private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    check_strength(passphrase)
    return encrypt_pkcs8(private, passphrase)


def is_encrypted(pem: bytes) -> bool:
    return pem.lstrip().startswith(f"-----BEGIN {ENCRYPTED_LABEL}-----".encode())


def safe_stat(path: Path) -> os.stat_result:
    """A key file's status, refusing what ssh would refuse: not a regular file (a symlink
    included: it could point anywhere), readable by group or others, or another user's."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise KeystoreError(f"key file {path} is missing") from None
    if stat.S_ISLNK(st.st_mode):
        raise KeystoreError(f"refusing key file {path}: it is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise KeystoreError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeystoreError(
            f"refusing key file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets group or "
            f"others read it; run chmod 600 {path}")
    if st.st_uid != os.getuid():
        raise KeystoreError(f"refusing key file {path}: owned by another user")
    return st


def read_private(path: Path, passphrase: Passphrase) -> PrivateKey:
    """Load a key file (checked by :func:`safe_stat`, opened without following links)."""
    safe_stat(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    if is_encrypted(data):
        password: bytes | None = passphrase.for_reading(path)
    else:
        if passphrase.configured() is not None:
            raise KeystoreError(f"key file {path} is not encrypted but {PASSPHRASE_ENV} is "
                                "set; unset it, or encrypt the keys with `issuer keys passphrase`")
        password = None
    try:
        private = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        raise KeystoreError(f"cannot load key file {path}: wrong {PASSPHRASE_ENV} or a "
                            "damaged file") from None
    if not isinstance(private, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                                ed25519.Ed25519PrivateKey)):
        raise KeystoreError(f"key file {path} holds an unsupported key type")
    return private


# --- the backend ---------------------------------------------------------------------------------


class FileKey(BackendKey):
    """A private key loaded from its file; it never leaves this object."""

    __slots__ = ("_alg", "_ecdsa", "_private")
    forkable = True  # the key is in this process's memory, which a fork copies

    def __init__(self, alg: str, private: PrivateKey) -> None:
        self._alg = alg
        self._private = private
        self._ecdsa = ec.ECDSA(_hash(alg))  # built once: a batch signs thousands of times

    def public_jwk(self) -> dict[str, Any]:
        return public_jwk(self._private.public_key())

    def sign(self, signing_input: bytes) -> bytes:
        key, alg = self._private, self._alg
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(signing_input)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return jws_signature(alg, key.sign(signing_input, self._ecdsa), der=True)
        if alg == "PS256":  # RFC 7518 section 3.5: salt as long as the hash
            return key.sign(signing_input, padding.PSS(mgf=padding.MGF1(_hash(alg)),
                                                       salt_length=32), _hash(alg))
        return key.sign(signing_input, padding.PKCS1v15(), _hash(alg))

    def __repr__(self) -> str:
        return f"FileKey(alg={self._alg!r})"


def _hash(alg: str) -> hashes.HashAlgorithm:
    return hashes.SHA384() if alg == "ES384" else hashes.SHA256()


def generate_private(alg: str, rsa_bits: int) -> PrivateKey:
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


class FileBackend(KeyBackend):
    """PEM files in ``directory``; loaded keys are cached until their file changes."""

    scheme = "file"
    algs = ALGS

    def __init__(self, directory: Path, passphrase: Passphrase) -> None:
        self.directory = directory
        self.passphrase = passphrase
        self._cache: dict[str, tuple[tuple[int, int], FileKey]] = {}

    def describe(self) -> str:
        return f"file ({self.directory})"

    def _path(self, ref: str) -> Path:
        if "/" in ref or ref.startswith("."):
            raise KeystoreError(f"key reference {ref!r} is not a file name")
        return self.directory / ref

    def ready(self) -> None:
        """The passphrase opens the keys already there (and is strong enough for new ones)."""
        self.recover()
        existing = sorted(self.directory.glob("*.pem"))
        if existing:
            read_private(existing[0], self.passphrase)
        passphrase = self.passphrase.configured()
        if passphrase is not None:
            check_strength(passphrase)

    def generate(self, alg: str, *, rsa_bits: int) -> NewKey:
        private = generate_private(alg, rsa_bits)
        jwk = public_jwk(private.public_key())
        ref = f"{jwk_thumbprint(jwk)}.pem"
        path = self._path(ref)
        atomic_write(path, encode_private(private, self.passphrase.configured()), mode=0o600)
        st = os.lstat(path)
        self._cache[ref] = ((st.st_mtime_ns, st.st_ino), FileKey(alg, private))
        return NewKey(public_jwk=jwk, ref=ref)

    def key(self, ref: str, alg: str) -> FileKey:
        self.recover()
        path = self._path(ref)
        st = safe_stat(path)
        cached = self._cache.get(ref)
        if cached and cached[0] == (st.st_mtime_ns, st.st_ino) and cached[1]._alg == alg:
            return cached[1]
        key = FileKey(alg, read_private(path, self.passphrase))
        self._cache[ref] = ((st.st_mtime_ns, st.st_ino), key)
        return key

    # --- changing the passphrase -------------------------------------------------------------

    def change_passphrase(self, new: bytes | None) -> list[str]:
        """Re-encrypt every key file under ``new`` (None: unencrypted), all or nothing; the
        caller holds the keystore lock. Returns the files re-encrypted."""
        if new is not None:
            check_strength(new)
        self.recover()
        names = sorted(p.name for p in self.directory.glob("*.pem"))
        # Every key is decrypted before anything is written: a wrong passphrase changes nothing.
        keys = {name: read_private(self.directory / name, self.passphrase) for name in names}
        for name, private in keys.items():
            atomic_write(self.directory / f"{name}.new", encode_private(private, new), mode=0o600)
        atomic_write(self.directory / REKEY_MARKER, json.dumps({"files": names}).encode(),
                     mode=0o600)
        self.recover()
        self.passphrase = Passphrase({PASSPHRASE_ENV: new.decode("utf-8")} if new else {})
        self._cache.clear()
        return names

    def recover(self) -> None:
        """Finish a passphrase change that committed (its marker exists) but was cut short."""
        marker = self.directory / REKEY_MARKER
        try:
            names = json.loads(marker.read_bytes())["files"]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError):
            raise KeystoreError(f"{marker} is damaged; restore the keys from a backup") from None
        for name in names:
            staged = self._path(f"{name}.new")
            if staged.exists():
                os.replace(staged, self._path(name))
        fsync_directory(self.directory)
        marker.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_backend(uri: str, *, keys_dir: Path, base: Path, env: Mapping[str, str],
                 prompt: Prompt | None = None) -> FileBackend:
    """``key_backend = "file"``."""
    if uri != "file":
        raise KeystoreError(f"key_backend {uri!r}: the file backend takes no attributes")
    return FileBackend(keys_dir, Passphrase(env, prompt))
