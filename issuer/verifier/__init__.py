"""The toolkit for authorization servers: verify software statements and register clients with
them (RFC 7591 sections 2.3 and 3.1.1), or accept clients by their Client ID Metadata Document
and the statement it carries (``ClientIdResolver``, docs/cimd.md).

It runs on untrusted input and imports nothing of the issuing side (no keystore, store,
service or CLI): only the standard library, joserfc, cryptography and the protocol modules it
shares with the issuer (errors, clock, encodings, the RFC 7591 rules, the status list format).
What authorization servers import is re-exported here and stays stable; the submodules may move.
"""

from __future__ import annotations

from issuer.verifier.cimd import ClientIdResolver, ResolvedClient
from issuer.verifier.registration import (
    MemoryReplayCache,
    Registrar,
    Registration,
    RegistrationPolicy,
)
from issuer.verifier.statement import VerifiedStatement, verify
from issuer.verifier.trust import StatementVerifier, TrustedIssuer

__all__ = [
    "ClientIdResolver",
    "MemoryReplayCache",
    "Registrar",
    "Registration",
    "RegistrationPolicy",
    "ResolvedClient",
    "StatementVerifier",
    "TrustedIssuer",
    "VerifiedStatement",
    "verify",
]
