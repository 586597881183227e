"""The ``pkcs11:`` backend: keys generated inside a PKCS#11 token (an HSM) and never leaving it.

``key_backend = "pkcs11:token=<label>?module-path=<.so>&pin-source=file:<path>"`` (RFC 7512
syntax: path attributes name the token, query attributes say how to reach it). The PIN is read
from the ``pin-source`` file (mode 0600 or stricter), never from the URI. Tested on every run
against a real SoftHSM2 token (tests/keys/test_backends.py).

Each key pair is created with ``C_GenerateKeyPair`` as a token object: the private half
``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``, so no private byte ever reaches this process.
Its ``CKA_ID`` (random) is the ``key_ref`` the keyring keeps; its ``CKA_LABEL`` is the kid, so
``pkcs11-tool --list-objects`` shows which key is which.

Mechanisms (PKCS#11 3.0 section 6): ECDSA with ``CKM_ECDSA`` over a digest computed here (SoftHSM2
has no combined ECDSA-with-SHA-2 mechanism), which returns ``r || s`` already in JWS form;
Ed25519 with ``CKM_EDDSA``; RS256 with ``CKM_SHA256_RSA_PKCS``; PS256 with
``CKM_SHA256_RSA_PKCS_PSS`` (salt as long as the hash, RFC 7518 section 3.5).
"""

from __future__ import annotations

import secrets
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.util.ec import encode_named_curve_parameters

from issuer.core.encoding import jwk_thumbprint
from issuer.core.errors import ConfigError, KeystoreError

from . import BackendKey, KeyBackend, NewKey, Prompt, parse_uri
from .jws import MIN_RSA_BITS, digest, jws_signature, public_jwk

#: alg -> (key type, EC curve OID or None)
_KEY_TYPES = {"ES256": (KeyType.EC, "1.2.840.10045.3.1.7"),
              "ES384": (KeyType.EC, "1.3.132.0.34"),
              "Ed25519": (KeyType.EC_EDWARDS, "1.3.101.112"),
              "RS256": (KeyType.RSA, None), "PS256": (KeyType.RSA, None)}
_CURVES = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}


#: One loaded module per path, shared by the backends of this process (PKCS#11 allows one
#: C_Initialize per process), finalized when the last one closes.
_MODULES: dict[str, tuple[Any, int]] = {}
_MODULES_LOCK = threading.Lock()


def _load_module(path: str) -> Any:
    with _MODULES_LOCK:
        module, users = _MODULES.get(path, (None, 0))
        if module is None:
            try:
                module = pkcs11.lib(path)
            except (RuntimeError, OSError) as exc:
                raise KeystoreError(f"pkcs11: cannot load the module {path}: {exc}") from None
        _MODULES[path] = (module, users + 1)
        return module


def _unload_module(path: str) -> None:
    with _MODULES_LOCK:
        module, users = _MODULES.get(path, (None, 0))
        if module is None:
            return
        if users > 1:
            _MODULES[path] = (module, users - 1)
            return
        del _MODULES[path]
        try:
            module.finalize()
        except PKCS11Error:
            pass  # already finalized


def _octets(der: bytes) -> bytes:
    """The content of a DER OCTET STRING (``CKA_EC_POINT`` wraps the point in one)."""
    if len(der) < 2 or der[0] != 0x04:
        raise KeystoreError("the token returned a malformed EC point")
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(der[2:2 + count], "big"), 2 + count
    return der[start:start + length]


class Pkcs11Key(BackendKey):
    """A private key object in the token; only its handle is here."""

    def __init__(self, backend: Pkcs11Backend, alg: str, private: Any, public: Any) -> None:
        self._backend = backend
        self._alg = alg
        self._private = private
        self._public = public

    def public_jwk(self) -> dict[str, Any]:
        alg, pub = self._alg, self._public
        with self._backend.errors("read a public key"):
            if alg in _CURVES:
                point = _octets(bytes(pub[Attribute.EC_POINT]))
                return public_jwk(ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[alg], point))
            if alg == "Ed25519":
                raw = _octets(bytes(pub[Attribute.EC_POINT]))
                return public_jwk(ed25519.Ed25519PublicKey.from_public_bytes(raw))
            numbers = rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                                           int.from_bytes(pub[Attribute.MODULUS], "big"))
            return public_jwk(numbers.public_key())

    def sign(self, signing_input: bytes) -> bytes:
        alg, key = self._alg, self._private
        with self._backend.errors(f"sign with {alg}"):
            if alg in _CURVES:
                raw = key.sign(digest(alg, signing_input), mechanism=Mechanism.ECDSA)
                return jws_signature(alg, bytes(raw), der=False)
            if alg == "Ed25519":
                return bytes(key.sign(signing_input, mechanism=Mechanism.EDDSA))
            if alg == "PS256":
                return bytes(key.sign(signing_input, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                                      mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32)))
            return bytes(key.sign(signing_input, mechanism=Mechanism.SHA256_RSA_PKCS))


class Pkcs11Backend(KeyBackend):
    """One token, one logged-in read-write session, opened at first use."""

    scheme = "pkcs11"
    algs = ("ES256", "ES384", "Ed25519", "PS256", "RS256")

    def __init__(self, token: str, module_path: Path, pin_path: Path) -> None:
        self.token = token
        self.module_path = module_path
        self.pin_path = pin_path
        self._session: Any = None
        self._keys: dict[tuple[str, str], Pkcs11Key] = {}
        # A PKCS#11 session runs one operation at a time (PKCS#11 3.0 section 5.6).
        self._lock = threading.RLock()

    def describe(self) -> str:
        return f"pkcs11 token {self.token!r}"

    def errors(self, doing: str) -> _Errors:
        return _Errors(self, doing)

    def _pin(self) -> str:
        try:
            st = self.pin_path.stat()
            text = self.pin_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeystoreError(f"pkcs11: cannot read the PIN file {self.pin_path}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
        if st.st_mode & 0o077:
            raise KeystoreError(f"pkcs11: refusing the PIN file {self.pin_path}: mode "
                                f"{stat.S_IMODE(st.st_mode):04o} lets group or others read it; "
                                f"run chmod 600 {self.pin_path}")
        return text.removesuffix("\n").removesuffix("\r")

    def session(self) -> Any:
        if self._session is None:
            pin = self._pin()
            lib = _load_module(str(self.module_path))
            try:
                with self.errors("open the token"):
                    token = lib.get_token(token_label=self.token)
                    self._session = token.open(user_pin=pin, rw=True)
            except BaseException:
                _unload_module(str(self.module_path))
                raise
        return self._session

    def ready(self) -> None:
        with self._lock:
            self.session()

    def generate(self, alg: str, *, rsa_bits: int) -> NewKey:
        key_type, curve = _KEY_TYPES[alg]
        ident = secrets.token_bytes(16)
        private_template = {Attribute.TOKEN: True, Attribute.PRIVATE: True,
                            Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                            Attribute.SIGN: True}
        public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True}
        with self._lock, self.errors(f"generate a {alg} key"):
            session = self.session()
            options: dict[str, Any] = dict(store=True, id=ident, label="issuer-new-key",
                                           public_template=public_template,
                                           private_template=private_template)
            if key_type == KeyType.RSA:
                if rsa_bits < MIN_RSA_BITS:
                    raise KeystoreError(f"RSA keys need at least {MIN_RSA_BITS} bits")
                public, private = session.generate_keypair(KeyType.RSA, rsa_bits, **options)
            else:
                params = session.create_domain_parameters(
                    key_type, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve or "")},
                    local=True)
                if key_type == KeyType.EC_EDWARDS:
                    options["mechanism"] = Mechanism.EC_EDWARDS_KEY_PAIR_GEN
                public, private = params.generate_keypair(**options)
            key = Pkcs11Key(self, alg, private, public)
            jwk = key.public_jwk()
            kid = jwk_thumbprint(jwk)
            public[Attribute.LABEL] = kid
            private[Attribute.LABEL] = kid
        self._keys[(ident.hex(), alg)] = key
        return NewKey(public_jwk=jwk, ref=ident.hex())

    def key(self, ref: str, alg: str) -> Pkcs11Key:
        cached = self._keys.get((ref, alg))
        if cached is not None:
            return cached
        try:
            ident = bytes.fromhex(ref)
        except ValueError:
            raise KeystoreError(f"pkcs11: key reference {ref!r} is not a CKA_ID") from None
        with self._lock, self.errors("find a key"):
            session = self.session()
            try:
                private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=ident)
                public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=ident)
            except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned):
                raise KeystoreError(f"pkcs11: token {self.token!r} holds no single key with "
                                    f"CKA_ID {ref}") from None
        key = self._keys[(ref, alg)] = Pkcs11Key(self, alg, private, public)
        return key

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                except PKCS11Error:
                    pass  # closing a session the token already dropped
                self._session = None
                self._keys.clear()
                _unload_module(str(self.module_path))


class _Errors:
    """Token errors as one-line KeystoreErrors, and one operation at a time on the session."""

    def __init__(self, backend: Pkcs11Backend, doing: str) -> None:
        self.backend = backend
        self.doing = doing

    def __enter__(self) -> None:
        self.backend._lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: object) -> None:
        self.backend._lock.release()
        if isinstance(exc, PKCS11Error):
            name = type(exc).__name__
            hint = {"PinIncorrect": "wrong PIN in the pin-source file",
                    "NoSuchToken": f"no token labelled {self.backend.token!r}",
                    "PinLocked": "the user PIN is locked"}.get(name, name)
            raise KeystoreError(f"pkcs11: cannot {self.doing} on token "
                                f"{self.backend.token!r}: {hint}") from None


def open_backend(uri: str, *, keys_dir: Path, base: Path, env: Mapping[str, str],
                 prompt: Prompt | None = None) -> Pkcs11Backend:
    """``pkcs11:token=<label>?module-path=<.so>&pin-source=file:<path>``."""
    _, path, query = parse_uri(uri)
    unknown = (set(path) - {"token"}) | (set(query) - {"module-path", "pin-source"})
    if unknown:
        raise ConfigError(f"key_backend pkcs11: unknown attribute(s) {', '.join(sorted(unknown))}"
                          " (known: token; module-path, pin-source)")
    for name, where in (("token", path), ("module-path", query), ("pin-source", query)):
        if not where.get(name):
            raise ConfigError(f"key_backend pkcs11: {name} is required, as in pkcs11:token=NAME"
                              "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:PIN")
    pin_source = query["pin-source"]
    if not pin_source.startswith("file:"):
        raise ConfigError("key_backend pkcs11: pin-source must be file:<path> (a PIN in the "
                          "configuration would sit in a world-readable file)")
    return Pkcs11Backend(path["token"], base / query["module-path"],
                         base / pin_source.removeprefix("file:"))
