"""Batch mint: ``issuer mint --batch`` of 10,000 statements against signing loops.

Ours: the batch file is read and minted exactly as ``issuer mint --batch FILE`` does
(``read_batch`` then ``Authority.mint_many`` with the command's signing workers): every
statement checked against its template,
given a status list index, signed, recorded with its transparency log entry, all in one durable
transaction with a signed checkpoint. Baselines, in the same run, sign the same claims with the
same key: (a) a PyJWT ``jwt.encode`` loop, (b) a raw joserfc ``jwt.encode`` loop; they record
nothing. Target >= 0.75x either loop (the goal beyond that is 1.0x).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jjwt
from joserfc.jwk import ECKey, OKPKey

from issuer.cli.mint import read_batch
from issuer.core.authority import Authority, init_issuer
from issuer.core.encoding import b64url_decode
from issuer.core.signing import default_workers
from issuer.keys.backends.file import read_private

from .common import Row, best_rate

N = 10_000
TARGET = 0.75


def _home(directory: Path, alg: str) -> Authority:
    return init_issuer(directory, issuer="https://connectors.example.com", alg=alg,
                       actor="bench", env={})


def _batch_file(directory: Path) -> Path:
    path = directory / "batch.jsonl"
    path.write_text("".join(json.dumps({"template": "mcp-connector",
                                        "claims": {"software_version": f"1.0.{i}"}}) + "\n"
                            for i in range(N)))
    return path


def run() -> list[Row]:
    rows = []
    for alg in ("ES256", "Ed25519"):
        with tempfile.TemporaryDirectory() as tmp:
            auth = _home(Path(tmp) / "home", alg)
            batch = _batch_file(Path(tmp))
            results = auth.mint_many(read_batch(str(batch))[0][:10], principal="bench", channel="cli")
            claims = json.loads(b64url_decode(results[0].software_statement.split(".")[1]))
            private = read_private(  # the same key, for the baselines only
                auth.config.keys_dir / auth.keystore.active().ref, auth.keystore.files.passphrase)
            kid = auth.keystore.active().kid

            def ours() -> int:
                done = auth.mint_many(read_batch(str(batch))[0], principal="bench", channel="cli",
                                      workers=default_workers())
                return len(done)

            jws_alg = "EdDSA" if alg == "Ed25519" else alg

            def with_pyjwt() -> int:
                for i in range(N):
                    pyjwt.encode({**claims, "jti": str(i)}, private, algorithm=jws_alg,
                                 headers={"kid": kid})
                return N

            pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            jkey = OKPKey.import_key(pem) if alg == "Ed25519" else ECKey.import_key(pem)

            def with_joserfc() -> int:
                for i in range(N):
                    jjwt.encode({"alg": alg, "kid": kid}, {**claims, "jti": str(i)}, jkey,
                                algorithms=[alg])
                return N

            ours_rate = best_rate(ours)
            pyjwt_rate = best_rate(with_pyjwt)
            joserfc_rate = best_rate(with_joserfc)
            count = auth.audit.count_statements()
            assert count >= 3 * N, "every minted statement must be recorded"
            auth.close()
        ours_name = f"batch mint {N:,} {alg} ({default_workers()} signing workers)"
        rows.append(Row(f"{ours_name} vs PyJWT loop", f"{ours_rate:,.0f}/s",
                        f"{pyjwt_rate:,.0f}/s", ours_rate / pyjwt_rate, ">=", TARGET))
        rows.append(Row(f"{ours_name} vs joserfc loop", f"{ours_rate:,.0f}/s",
                        f"{joserfc_rate:,.0f}/s", ours_rate / joserfc_rate, ">=", TARGET))
    return rows
