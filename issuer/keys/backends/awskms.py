"""The ``awskms:`` backend: asymmetric AWS KMS keys, created in KMS and used there to sign.

``key_backend = "awskms:region=<region>[;profile=<profile>][?endpoint-url=<url>]"``. Credentials
come from boto3's usual chain (environment, profile, instance or task role); the URI holds none.
``endpoint-url`` points at a KMS-compatible endpoint (a VPC endpoint, LocalStack, or moto's
server, which the tests use offline).

Each key is a ``KeyUsage=SIGN_VERIFY`` KMS key (``CreateKey``); its ARN is the ``key_ref`` the
keyring keeps, and it is tagged ``kid=<RFC 7638 thumbprint>``. Signing inputs up to 4096 bytes
are sent as they are (``MessageType=RAW``); longer ones as their SHA-2 digest
(``MessageType=DIGEST``), which moto does not implement, so that path is not tested offline.
KMS answers ECDSA in DER, converted to JWS form in backends/jws.py.

Limits (docs/keys.md): no Ed25519 here (KMS's ``ECC_NIST_EDWARDS25519`` is not in moto, so this
project can't test it offline); RSA sizes are 2048, 3072 or 4096; every signature is a network
call (KMS request quotas apply: shared ``Sign`` quota per account and region); KMS keys are
never deleted by the issuer (schedule deletion yourself once a key is expired or revoked).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from issuer.core.encoding import jwk_thumbprint
from issuer.core.errors import ConfigError, KeystoreError

from . import BackendKey, KeyBackend, NewKey, Prompt, parse_uri
from .jws import digest, jws_signature, public_jwk

#: The largest message KMS signs as it is (``MessageType=RAW``).
RAW_LIMIT = 4096
#: alg -> (KMS KeySpec, KMS SigningAlgorithm); RSA KeySpecs take the size.
_SPECS = {"ES256": ("ECC_NIST_P256", "ECDSA_SHA_256"), "ES384": ("ECC_NIST_P384", "ECDSA_SHA_384"),
          "RS256": ("RSA_{bits}", "RSASSA_PKCS1_V1_5_SHA_256"),
          "PS256": ("RSA_{bits}", "RSASSA_PSS_SHA_256")}  # KMS PSS salt = hash length


class AwsKmsKey(BackendKey):
    """A KMS key, by ARN."""

    def __init__(self, backend: AwsKmsBackend, arn: str, alg: str) -> None:
        self._backend = backend
        self.arn = arn
        self._alg = alg
        self._jwk: dict[str, Any] | None = None

    def public_jwk(self) -> dict[str, Any]:
        if self._jwk is None:
            with self._backend.errors("read the public key"):
                der = self._backend.client.get_public_key(KeyId=self.arn)["PublicKey"]
            key = load_der_public_key(der)
            if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
                raise KeystoreError(f"awskms: {self.arn} is not an EC or RSA key")
            self._jwk = public_jwk(key)
        return self._jwk

    def sign(self, signing_input: bytes) -> bytes:
        # KMS takes at most 4096 bytes of message; beyond, it signs a digest computed here.
        message, kind = ((signing_input, "RAW") if len(signing_input) <= RAW_LIMIT
                         else (digest(self._alg, signing_input), "DIGEST"))
        with self._backend.errors(f"sign with {self._alg}"):
            answer = self._backend.client.sign(
                KeyId=self.arn, Message=message, MessageType=kind,
                SigningAlgorithm=_SPECS[self._alg][1])
        return jws_signature(self._alg, answer["Signature"], der=True)


class AwsKmsBackend(KeyBackend):
    """Keys in one AWS account and region."""

    scheme = "awskms"
    algs = ("ES256", "ES384", "PS256", "RS256")

    def __init__(self, region: str, profile: str | None, endpoint_url: str | None) -> None:
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self._client: Any = None
        self._keys: dict[tuple[str, str], AwsKmsKey] = {}

    def describe(self) -> str:
        return f"awskms ({self.region})"

    @property
    def client(self) -> Any:
        if self._client is None:
            with self.errors("create a client"):
                session = boto3.session.Session(profile_name=self.profile,
                                                region_name=self.region)
                self._client = session.client("kms", endpoint_url=self.endpoint_url)
        return self._client

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """KMS and credential errors as one-line KeystoreErrors."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise KeystoreError(f"awskms: cannot {doing}: {error.get('Code', 'error')}: "
                                f"{error.get('Message', '')}".rstrip(": ")) from None
        except BotoCoreError as exc:
            raise KeystoreError(f"awskms: cannot {doing}: {exc}") from None

    def ready(self) -> None:
        with self.errors("reach KMS"):
            self.client.list_keys(Limit=1)

    def generate(self, alg: str, *, rsa_bits: int) -> NewKey:
        spec, _ = _SPECS[alg]
        if "{bits}" in spec:
            if rsa_bits not in (2048, 3072, 4096):
                raise KeystoreError(f"awskms: RSA keys are 2048, 3072 or 4096 bits, not {rsa_bits}")
            spec = spec.format(bits=rsa_bits)
        with self.errors(f"create a {alg} key"):
            meta = self.client.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY",
                                          Description=f"software statement signing key ({alg})")
        key = AwsKmsKey(self, meta["KeyMetadata"]["Arn"], alg)
        jwk = key.public_jwk()
        with self.errors("tag the key"):
            self.client.tag_resource(KeyId=key.arn,
                                     Tags=[{"TagKey": "kid", "TagValue": jwk_thumbprint(jwk)}])
        self._keys[(key.arn, alg)] = key
        return NewKey(public_jwk=jwk, ref=key.arn)

    def key(self, ref: str, alg: str) -> AwsKmsKey:
        if alg not in _SPECS:
            raise KeystoreError(f"awskms: can't sign {alg}")
        cached = self._keys.get((ref, alg))
        if cached is None:
            cached = self._keys[(ref, alg)] = AwsKmsKey(self, ref, alg)
        return cached


def open_backend(uri: str, *, keys_dir: Path, base: Path, env: Mapping[str, str],
                 prompt: Prompt | None = None) -> AwsKmsBackend:
    """``awskms:region=<region>[;profile=<profile>][?endpoint-url=<url>]``."""
    _, path, query = parse_uri(uri)
    unknown = (set(path) - {"region", "profile"}) | (set(query) - {"endpoint-url"})
    if unknown:
        raise ConfigError(f"key_backend awskms: unknown attribute(s) {', '.join(sorted(unknown))}"
                          " (known: region, profile; endpoint-url)")
    if not path.get("region"):
        raise ConfigError("key_backend awskms: region is required, as in awskms:region=eu-west-1")
    return AwsKmsBackend(path["region"], path.get("profile"), query.get("endpoint-url"))
