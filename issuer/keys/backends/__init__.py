"""Key backends: where private keys live, behind one small signer interface.

A backend generates keys *inside itself*, tells the public JWK of each, and signs a JWS signing
input, returning the signature in JWS form (RFC 7518 section 3). The keystore keeps the keyring
(public state) and the lifecycle, the same over every backend; a backend only holds and uses
private keys. Which backend is chosen by the scheme of ``key_backend``:

- ``file`` (backends/file.py): PKCS#8 PEM files in ``keys_dir``;
- ``pkcs11:`` (backends/pkcs11.py): a PKCS#11 token (an HSM; SoftHSM2 in the tests);
- ``awskms:`` (backends/awskms.py): AWS KMS asymmetric keys.

A backend module is imported only when configured, so its client library (python-pkcs11, boto3)
is an optional extra. Adding a backend touches this folder: a module and a line in
:data:`BACKENDS` (docs/keys.md says how GCP KMS, Azure Key Vault and Vault transit fit).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

from issuer.core.errors import ConfigError

#: URI scheme -> (module under issuer.keys.backends, the optional extra that installs its client).
BACKENDS: dict[str, tuple[str, str | None]] = {
    "file": ("file", None),
    "pkcs11": ("pkcs11", "pkcs11"),
    "awskms": ("awskms", "awskms"),
}

#: Called with a prompt; returns what the user typed (a terminal), or None when there is none.
Prompt = Callable[[str], str | None]


@dataclass(frozen=True)
class NewKey:
    """A key a backend just generated: its public JWK and where the backend finds it again
    (``ref``: a file name, a token object id, a KMS key ARN; never secret)."""

    public_jwk: dict[str, Any]
    ref: str


class BackendKey(ABC):
    """One private key inside a backend, ready to sign."""

    #: May a forked worker process sign with this object (issuer/core/signing.py)? Only
    #: when it holds the key itself: a token session or a KMS client belongs to one process.
    forkable: ClassVar[bool] = False

    @abstractmethod
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK, as the backend holds it (the keystore checks it against the kid)."""

    @abstractmethod
    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature value of ``signing_input`` (RFC 7515 section 5.1, step 5)."""


class KeyBackend(ABC):
    """Where private keys live. Every method raises KeystoreError with a one-line reason."""

    scheme: ClassVar[str]
    #: The algorithms this backend can generate keys for.
    algs: ClassVar[tuple[str, ...]]

    @abstractmethod
    def ready(self) -> None:
        """Check the backend can be used (passphrase right, token reachable, credentials),
        before anything is written."""

    @abstractmethod
    def generate(self, alg: str, *, rsa_bits: int) -> NewKey:
        """A new key pair for ``alg``, made inside the backend."""

    @abstractmethod
    def key(self, ref: str, alg: str) -> BackendKey:
        """The key filed under ``ref``, to sign with ``alg``."""

    def describe(self) -> str:
        """Where keys live, for messages (never a secret)."""
        return self.scheme

    def close(self) -> None:
        """Release sessions and clients."""


def parse_uri(uri: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """``scheme:a=1;b=2?c=3&d=4`` -> scheme, path attributes, query attributes (RFC 7512
    section 2.3 syntax, percent-decoded)."""
    scheme, _, rest = uri.partition(":")
    path, _, query = rest.partition("?")

    def attrs(text: str, sep: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in filter(None, text.split(sep)):
            name, eq, value = part.partition("=")
            if not eq or not name:
                raise ConfigError(f"key_backend {scheme}: attribute {part!r} is not name=value")
            if name in out:
                raise ConfigError(f"key_backend {scheme}: attribute {name!r} given twice")
            out[unquote(name)] = unquote(value)
        return out

    return scheme, attrs(path, ";"), attrs(query, "&")


def open_backend(uri: str, *, keys_dir: Path, base: Path, env: Mapping[str, str],
                 prompt: Prompt | None = None) -> KeyBackend:
    """The backend ``key_backend`` names. Relative paths in it are relative to ``base`` (the
    directory of issuer.toml)."""
    scheme = uri.partition(":")[0] if uri != "file" else "file"
    if scheme not in BACKENDS:
        raise ConfigError(f"key_backend {uri!r}: unknown scheme {scheme!r} (known: "
                          f"{', '.join(BACKENDS)})")
    module_name, extra = BACKENDS[scheme]
    try:
        module = importlib.import_module(f"issuer.keys.backends.{module_name}")
    except ImportError as exc:
        raise ConfigError(f"key_backend {scheme}: its client library is not installed "
                          f"({exc.name}); pip install 'software-statement-issuer[{extra}]'"
                          ) from None
    opener: Callable[..., KeyBackend] = module.open_backend
    return opener(uri, keys_dir=keys_dir, base=base, env=env, prompt=prompt)
