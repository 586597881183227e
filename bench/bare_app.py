"""The baselines the HTTP benchmarks compare against: what a user would write instead.

- ``POST /mint``: a bare FastAPI endpoint that signs the same claims with joserfc and records
  nothing (no auth, no template, no audit, no log, no status list).
- ``GET /jwks``: a bare FastAPI endpoint returning constant bytes.

Run under uvicorn with the same settings as ``issuer serve --no-access-log``.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.jwk import ECKey


def create_app(pem: bytes, claims: dict, jwks: bytes) -> FastAPI:
    key = ECKey.import_key(pem)
    app = FastAPI()

    @app.post("/mint")
    def mint(request_body: dict) -> JSONResponse:
        now = int(time.time())
        payload = {**claims, **request_body.get("claims", {}), "iat": now,
                   "exp": now + 15552000, "jti": secrets.token_urlsafe(16)}
        token = jwt.encode({"alg": "ES256", "kid": "bench"}, payload, key, algorithms=["ES256"])
        return JSONResponse({"software_statement": token}, status_code=201)

    @app.get("/jwks")
    async def constant(_: Request) -> Response:
        return Response(jwks, media_type="application/jwk-set+json")

    return app


if __name__ == "__main__":
    port, key_file, claims_file, jwks_file = sys.argv[1:5]
    uvicorn.run(create_app(Path(key_file).read_bytes(), json.loads(Path(claims_file).read_text()),
                           Path(jwks_file).read_bytes()),
                host="127.0.0.1", port=int(port), log_level="warning", access_log=False,
                server_header=False, proxy_headers=False)
