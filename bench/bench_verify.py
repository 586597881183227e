"""Verify: ``StatementVerifier.verify`` with a warm JWKS cache against raw joserfc
``jwt.decode`` of the same statement with the same key (signature only). Target >= 0.8x.

Ours does the whole job: header rules, trusted-issuer lookup, cached remote JWKS, signature,
``iss``/``exp``/``iat``, RFC 7591 metadata rules, and the status list entry from a warm cache.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from joserfc import jwt as jjwt
from joserfc.jwk import JWKRegistry

from issuer.core.authority import init_issuer
from issuer.core.statements import MintRequest
from issuer.service.app import create_app
from issuer.verifier.remote import HttpResponse
from issuer.verifier.trust import StatementVerifier, TrustedIssuer

from .common import Row, best_rate

ISS = "https://connectors.example.com"
N = 5000


def run() -> list[Row]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    rows = []
    for alg in ("ES256", "Ed25519"):
        with tempfile.TemporaryDirectory() as tmp:
            auth = init_issuer(Path(tmp), issuer=ISS, alg=alg, actor="bench", env={})
            token = auth.mint(MintRequest("mcp-connector", {"software_version": "1"}),
                              principal="bench", channel="cli").software_statement
            site = TestClient(create_app(auth))

            def get(url: str, headers: object) -> HttpResponse:
                r = site.get(url.replace(ISS, ""))
                return HttpResponse(r.status_code, {k.lower(): v for k, v in r.headers.items()},
                                    r.content)

            verifier = StatementVerifier(trusted=[TrustedIssuer(
                issuer=ISS, jwks_uri=f"{ISS}/.well-known/jwks.json")])
            entry = verifier.issuer(ISS)
            assert entry.jwks is not None and verifier.status is not None
            entry.jwks._get = get
            verifier.status.fetch = lambda uri: get(uri, {}).body
            verifier.verify(token)  # warm: JWKS and status list cached

            jwk = next(k for k in auth.jwks()["keys"] if k["kid"] == auth.keystore.active().kid)
            key = JWKRegistry.import_key({k: v for k, v in jwk.items() if k != "alg"})

            def ours() -> int:
                for _ in range(N):
                    verifier.verify(token)
                return N

            def raw() -> int:
                for _ in range(N):
                    jjwt.decode(token, key, algorithms=[alg])
                return N

            ours_rate, raw_rate = best_rate(ours), best_rate(raw)
            auth.close()
        ratio = ours_rate / raw_rate
        rows.append(Row(f"verify {alg}, warm caches, vs joserfc jwt.decode",
                        f"{ours_rate:,.0f}/s", f"{raw_rate:,.0f}/s", ratio, ">=", 0.8))
    return rows
