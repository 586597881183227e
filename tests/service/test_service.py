"""The HTTP service in-process: every route, its auth, its errors, and fuzzed input."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority, init_issuer
from issuer.core.clock import FixedClock
from issuer.service.app import MAX_BODY, create_app
from issuer.verifier.statement import verify
from tests.conftest import START, Cli

PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


#: (path template, method, status) of every answer a documented route gave in this module.
SENT: set[tuple[str, str, str]] = set()


def recording(app: Any) -> Any:
    """``app``, noting which route answered each request with which status (into SENT)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        status: list[int] = []

        async def noted(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await app(scope, receive, noted)
        route = scope.get("route")
        if scope["type"] == "http" and status and getattr(route, "include_in_schema", False) \
                and scope["method"] in route.methods:
            SENT.add((route.path, scope["method"].lower(), str(status[0])))

    return asgi


class Api:
    """A TestClient plus tokens of every role."""

    def __init__(self, auth: Authority) -> None:
        self.auth = auth
        self.app = create_app(auth, jwks_recheck=0)
        self.client = TestClient(recording(self.app), raise_server_exceptions=False)
        self.secrets: dict[str, str] = {}
        for name, role, templates in [("ci-calendar", "minter", ["mcp-connector"]),
                                      ("ci-desktop", "minter", ["desktop-agent", "workflow-runner"]),
                                      ("auditor", "auditor", []), ("admin", "admin", [])]:
            _, secret = auth.tokens.create(name, role=role, templates=templates, rate_limit=None,
                                           actor="setup", channel="cli", now=auth.now())
            self.secrets[name] = secret

    def h(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}"}

    def mint(self, name: str = "ci-calendar", template: str = "mcp-connector",
             claims: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        body = {"template": template, "claims": {"software_version": "1.4.2"} if claims is None
                else claims}
        return self.client.post("/v1/statements", json=body, headers=self.h(name), **kwargs)


@pytest.fixture
def api(auth: Authority) -> Iterator[Api]:
    yield Api(auth)


@pytest.fixture(scope="module", autouse=True)
def _every_status_sent_is_documented() -> Iterator[None]:
    """After the module's tests: each status a route sent is in its OpenAPI responses."""
    yield
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory) / "issuer"
        init_issuer(home, issuer="https://issuer.example.com", alg="ES256", actor="t", env={},
                    clock=FixedClock(START)).close()
        auth = Authority.from_config(home / "issuer.toml", env={}, clock=FixedClock(START))
        try:
            spec = TestClient(create_app(auth)).get("/openapi.json").json()
        finally:
            auth.close()
    undocumented = sorted((path, method, status) for path, method, status in SENT
                          if status not in spec["paths"][path][method]["responses"])
    assert not undocumented, undocumented


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == code, body
    assert "\n" not in body["error_description"]
    return body


# --- public endpoints ----------------------------------------------------------------------


def test_jwks_is_public_cached_and_tagged(api: Api) -> None:
    r = api.client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/jwk-set+json"
    assert r.headers["cache-control"] == "public, max-age=300"  # rotation is 90 days off
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong
    keys = r.json()["keys"]
    assert [k["kid"] for k in keys] == [api.auth.keystore.active().kid,
                                        api.auth.keys.by_state("next")[0].kid]
    assert all(not PRIVATE & k.keys() for k in keys)
    for header in (etag, f'"other", {etag}', "*", f"W/{etag}"):
        again = api.client.get("/.well-known/jwks.json", headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
    assert api.client.get("/.well-known/jwks.json",
                          headers={"If-None-Match": '"stale"'}).status_code == 200


def test_jwks_follows_the_keystore_without_restart(api: Api) -> None:
    before = api.client.get("/.well-known/jwks.json")
    new = api.auth.keys.generate("Ed25519", actor="cli-user", channel="cli")
    after = api.client.get("/.well-known/jwks.json", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert new.kid in {k["kid"] for k in after.json()["keys"]}


def test_issuer_metadata(api: Api) -> None:
    doc = api.client.get("/.well-known/software-statement-issuer").json()
    assert doc["issuer"] == "https://issuer.example.com"
    assert doc["jwks_uri"] == "https://issuer.example.com/.well-known/jwks.json"
    assert doc["statement_signing_alg_values_supported"] == ["ES256"]
    assert doc["statements_endpoint"] == "https://issuer.example.com/v1/statements"


def test_metadata_urls_ignore_the_host_header(api: Api) -> None:
    doc = api.client.get("/.well-known/software-statement-issuer",
                         headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"}).json()
    assert "evil" not in json.dumps(doc)


def test_healthz(api: Api, home: Path) -> None:
    ok = api.client.get("/healthz")
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    ring = home / "keys" / "keyring.json"
    ring.write_text('{"version": 1, "keys": []}')
    down = api.client.get("/healthz")
    assert down.status_code == 503 and down.json()["error"] == "keystore_error"


# --- minting -----------------------------------------------------------------------------------


def test_mint_returns_the_cli_object_after_recording(api: Api, cli: Cli) -> None:
    r = api.mint()
    assert r.status_code == 201, r.text
    body = r.json()
    cli_keys = set(json.loads(cli("mint", "mcp-connector", "--set", "software_version=1",
                                  "--json").stdout))
    assert set(body) == cli_keys
    assert r.headers["location"] == f"/v1/statements/{body['jti']}"
    record = api.auth.audit.statement(body["jti"])
    assert (record.principal, record.channel) == ("ci-calendar", "http")
    assert record.digest == body["digest"] and record.log_index == body["log_index"]
    verified = verify(body["software_statement"], jwks=api.auth.jwks(),
                      issuer="https://issuer.example.com", clock=api.auth.clock)
    assert verified.claims["software_version"] == "1.4.2"


def test_no_request_value_reaches_issuer_claims_or_header(api: Api) -> None:
    for claim in ("iss", "jti", "iat", "exp", "nbf", "status"):
        r = api.mint("admin", claims={"software_version": "1", claim: "https://evil.example"})
        assert_error(r, 400, "invalid_client_metadata")
    r = api.client.post("/v1/statements?alg=none&kid=evil&iss=https://evil.example",
                        json={"template": "mcp-connector", "claims": {"software_version": "1"}},
                        headers={**api.h("ci-calendar"), "X-Forwarded-Host": "evil.example",
                                 "alg": "none", "kid": "evil"})
    assert r.status_code == 201
    token = r.json()["software_statement"]
    verified = verify(token, jwks=api.auth.jwks(), issuer="https://issuer.example.com",
                      clock=api.auth.clock)
    assert verified.header == {"alg": "ES256", "kid": api.auth.keystore.active().kid, "typ": "JWT"}
    assert verified.claims["iss"] == "https://issuer.example.com"
    assert verified.claims["iat"] == START
    assert "evil" not in json.dumps(verified.claims)
    for extra in ({"alg": "none"}, {"kid": "evil"}, {"header": {"alg": "none"}}):
        assert_error(api.client.post("/v1/statements", headers=api.h("admin"), json={
            "template": "mcp-connector", "claims": {"software_version": "1"}, **extra}),
            400, "invalid_request")


def test_auth_errors(api: Api) -> None:
    body = {"template": "mcp-connector", "claims": {"software_version": "1"}}
    missing = api.client.post("/v1/statements", json=body)
    assert_error(missing, 401, "invalid_token")
    assert missing.headers["www-authenticate"] == 'Bearer realm="issuer"'
    for header in ("Bearer nope", "Bearer ssi_AAAAAAAAAAAA." + "A" * 43, "Basic dXNlcjpwYXNz",
                   "Bearer " + api.secrets["admin"][:-1] + "x", "Bearer"):
        r = api.client.post("/v1/statements", json=body, headers={"Authorization": header})
        assert_error(r, 401, "invalid_token")
    api.auth.tokens.revoke("ci-calendar", actor="t", channel="cli", now=api.auth.now())
    revoked = api.mint()
    assert "revoked" in assert_error(revoked, 401, "invalid_token")["error_description"]
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]


def test_scope_errors(api: Api) -> None:
    assert_error(api.mint("ci-calendar", "desktop-agent"), 403, "insufficient_scope")
    assert_error(api.mint("auditor"), 403, "insufficient_scope")
    assert_error(api.mint("ci-calendar", "no-such-template"), 403, "insufficient_scope")
    assert_error(api.mint("admin", "no-such-template"), 404, "not_found")
    assert api.mint("ci-desktop", "workflow-runner").status_code == 201
    assert api.mint("admin", "desktop-agent").status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"template": "mcp-connector"}, 400, "invalid_request"),  # required claim missing
        ({"template": "mcp-connector", "claims": {"software_version": "1", "scope": "x"}}, 400,
         "invalid_request"),
        ({"template": "mcp-connector", "claims": {"software_version": 1}}, 400,
         "invalid_client_metadata"),
        ({"template": "mcp-connector", "claims": {"software_version": "1",
                                                  "redirect_uris": ["https://*.x.example/cb"]}},
         400, "invalid_redirect_uri"),
        ({"template": "mcp-connector", "claims": {"software_version": "1",
                                                  "redirect_uris": "https://x.example/cb"}},
         400, "invalid_client_metadata"),
        ({"template": "../etc/passwd", "claims": {}}, 404, "not_found"),
        ({"template": 5, "claims": {}}, 400, "invalid_request"),
        ({"claims": {}}, 400, "invalid_request"),
        ({"template": "mcp-connector", "claims": []}, 400, "invalid_request"),
        ([], 400, "invalid_request"),
        ("text", 400, "invalid_request"),
    ],
)
def test_bad_mint_bodies(api: Api, body: Any, status: int, code: str) -> None:
    before = api.auth.audit.count_statements()
    r = api.client.post("/v1/statements", json=body, headers=api.h("admin"))
    assert_error(r, status, code)
    assert api.auth.audit.count_statements() == before


def test_malformed_json_and_content(api: Api) -> None:
    for content in (b"{bad", b"", b"\xff\xfe", b"[" * 60000, b'{"template": "x"' * 10):
        r = api.client.post("/v1/statements", content=content,
                            headers={**api.h("admin"), "Content-Type": "application/json"})
        assert_error(r, 400, "invalid_request")


def test_body_over_64_kib_is_refused_before_parsing(api: Api) -> None:
    padding = "x" * MAX_BODY
    big = {"template": "mcp-connector", "claims": {"software_version": padding}}
    assert_error(api.client.post("/v1/statements", json=big, headers=api.h("admin")), 413,
                 "request_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    chunked = api.client.post("/v1/statements", content=chunks(),
                              headers={**api.h("admin"), "Content-Type": "application/json"})
    assert_error(chunked, 413, "request_too_large")
    liar = api.client.post("/v1/statements", content=b"{}",
                           headers={**api.h("admin"), "Content-Length": "99999999999"})
    assert liar.status_code in (400, 413)


def test_broken_template_on_the_server_is_409(api: Api, home: Path) -> None:
    (home / "templates" / "mcp-connector.toml").write_text("lifetime = [")
    body = assert_error(api.mint(), 409, "invalid_template")
    assert "mcp-connector.toml" in body["error_description"]


def test_rate_limit(home: Path) -> None:
    clock = FixedClock(START)
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    api = Api(auth)
    _, secret = auth.tokens.create("slow", role="minter", templates=["desktop-agent"],
                                   rate_limit="3/minute", actor="t", channel="cli", now=auth.now())
    _, free = auth.tokens.create("free", role="minter", templates=["desktop-agent"],
                                 rate_limit="unlimited", actor="t", channel="cli", now=auth.now())
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"template": "desktop-agent", "claims": {"software_version": "1"}}
    for _ in range(3):
        assert api.client.post("/v1/statements", json=body, headers=headers).status_code == 201
    limited = api.client.post("/v1/statements", json=body, headers=headers)
    assert_error(limited, 429, "rate_limited")
    assert limited.headers["retry-after"] == "20"
    clock.advance(20)
    assert api.client.post("/v1/statements", json=body, headers=headers).status_code == 201
    for _ in range(50):
        assert api.client.post("/v1/statements", json=body,
                               headers={"Authorization": f"Bearer {free}"}).status_code == 201
    auth.close()


# --- audit and templates -----------------------------------------------------------------------


def test_audit_api(api: Api) -> None:
    jtis = [api.mint(claims={"software_version": f"1.{i}"}).json()["jti"] for i in range(5)]
    api.mint("ci-desktop", "desktop-agent")
    assert_error(api.client.get("/v1/statements", headers=api.h("ci-calendar")), 403,
                 "insufficient_scope")
    assert_error(api.client.get("/v1/statements"), 401, "invalid_token")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "template": "mcp-connector"}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/v1/statements", params=params, headers=api.h("auditor")).json()
        seen += [r["jti"] for r in page["statements"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == jtis
    one = api.client.get(f"/v1/statements/{jtis[0]}", headers=api.h("admin")).json()
    assert one["principal"] == "ci-calendar" and one["channel"] == "http"
    by_digest = api.client.get(f"/v1/statements/{one['digest']}", headers=api.h("auditor"))
    assert by_digest.json()["jti"] == jtis[0]
    sid = api.auth.templates.load("desktop-agent").claims["software_id"]
    only = api.client.get("/v1/statements", params={"software_id": sid}, headers=api.h("auditor"))
    assert [r["template"] for r in only.json()["statements"]] == ["desktop-agent"]
    assert api.client.get("/v1/statements", params={"since": "2999-01-01"},
                          headers=api.h("auditor")).json()["statements"] == []
    assert_error(api.client.get("/v1/statements/nope", headers=api.h("auditor")), 404, "not_found")
    for params in ({"cursor": "garbage"}, {"since": "soon"}, {"limit": 0}, {"limit": 5000},
                   {"limit": "x"}):
        assert_error(api.client.get("/v1/statements", params=params, headers=api.h("auditor")),
                     400, "invalid_request")


def test_templates_api_lists_what_the_caller_may_mint(api: Api) -> None:
    def names(who: str) -> list[str]:
        return [t["name"] for t in api.client.get("/v1/templates", headers=api.h(who)).json()["templates"]]

    assert names("ci-calendar") == ["mcp-connector"]
    assert names("ci-desktop") == ["desktop-agent", "workflow-runner"]
    assert names("auditor") == []
    assert names("admin") == ["desktop-agent", "mcp-connector", "publisher-base", "workflow-runner"]
    one = api.client.get("/v1/templates/mcp-connector", headers=api.h("ci-calendar")).json()
    assert one["claims"]["token_endpoint_auth_method"] == "private_key_jwt"
    assert one["required"] == ["software_version"]
    assert_error(api.client.get("/v1/templates/desktop-agent", headers=api.h("ci-calendar")),
                 404, "not_found")
    assert_error(api.client.get("/v1/templates"), 401, "invalid_token")


def test_token_secrets_are_stored_only_as_hashes(api: Api, home: Path) -> None:
    dump = "\n".join(sqlite3.connect(home / "issuer.db").iterdump())
    for secret in api.secrets.values():
        assert secret.startswith("ssi_") and len(secret.split(".")[1]) == 43  # 256 bits
        assert secret not in dump and secret.split(".")[1] not in dump
    events = [e.type for e in api.auth.audit.events(type_prefix="token.")]
    assert events == ["token.created"] * 4


def test_openapi_describes_every_route_auth_and_errors(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    routes = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes == {
        ("/.well-known/jwks.json", "get"), ("/.well-known/software-statement-issuer", "get"),
        ("/.well-known/historical-keys", "get"),
        ("/healthz", "get"), ("/v1/statements", "post"), ("/v1/statements", "get"),
        ("/v1/statements/{jti}", "get"), ("/v1/templates", "get"), ("/v1/templates/{name}", "get"),
        ("/v1/log/checkpoint", "get"), ("/v1/log/key", "get"), ("/v1/log/proof/inclusion", "get"),
        ("/v1/log/proof/consistency", "get"), ("/v1/log/entries", "get"),
        ("/v1/statements/{jti}/revoke", "post"), ("/v1/status-lists/{list_id}", "get"),
        ("/v1/status", "post"), ("/v1/oidc/token", "post"), ("/clients/{name}", "get"),
        ("/metrics", "get")}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    mint = spec["paths"]["/v1/statements"]["post"]
    assert mint["security"] == [{"HTTPBearer": []}]
    assert {"201", "400", "401", "403", "404", "409", "413", "429"} <= set(mint["responses"])
    assert "security" not in spec["paths"]["/.well-known/jwks.json"]["get"]
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op.get("summary"), path
            # Bad parameters and bodies are 400 with the JSON error object, never 422.
            assert "422" not in op["responses"], path
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"}, (path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method in [("/v1/status-lists/{list_id}", "get"), ("/v1/statements/{jti}", "get"),
                         ("/clients/{name}", "get"), ("/v1/log/proof/consistency", "get")]:
        assert "400" in spec["paths"][path][method]["responses"], path


# --- never a 500 -------------------------------------------------------------------------------

ROUTES = ["/.well-known/jwks.json", "/.well-known/software-statement-issuer", "/healthz",
          "/.well-known/historical-keys", "/v1/log/checkpoint", "/v1/log/key",
          "/v1/log/proof/inclusion", "/v1/log/proof/consistency", "/v1/log/entries",
          "/v1/status", "/v1/status-lists/x", "/v1/statements/x/revoke",
          "/v1/statements", "/v1/statements/x", "/v1/templates", "/v1/templates/mcp-connector",
          "/openapi.json", "/nope", "/clients/x", "/clients/desktop-agent", "/clients/x/"]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=40),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c,
                                                                              max_size=4),
                           max_leaves=12)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       route=st.sampled_from(ROUTES) | st.text(max_size=30).map(lambda t: "/" + t),
       auth_header=st.sampled_from([None, "admin", "auditor", "ci-calendar", "junk"]),
       body=st.one_of(st.none(), json_values, st.fixed_dictionaries(
           {"template": st.sampled_from(["mcp-connector", "desktop-agent", "x", ""]) | st.text(max_size=10),
            "claims": st.dictionaries(st.sampled_from(["software_version", "redirect_uris", "scope",
                                                       "iss", "jwks", "x"]) | st.text(max_size=8),
                                      json_values, max_size=3)})),
       raw=st.none() | st.binary(max_size=200),
       query=st.dictionaries(st.sampled_from(["limit", "cursor", "since", "template", "kid",
                                              "digest", "jti", "tree_size", "first", "second",
                                              "start", "end"]),
                             st.text(max_size=10), max_size=3),
       extra=st.dictionaries(st.sampled_from(["If-None-Match", "Content-Type", "Accept"]),
                             st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                     max_size=20), max_size=2))
def test_fuzzed_requests_never_get_a_500(shared_api: Api, method: str, route: str,
                                         auth_header: str | None, body: Any, raw: bytes | None,
                                         query: dict[str, str], extra: dict[str, str]) -> None:
    headers = dict(extra)
    if auth_header == "junk":
        headers["Authorization"] = "Bearer junk"
    elif auth_header:
        headers.update(shared_api.h(auth_header))
    kwargs: dict[str, Any] = {"headers": headers, "params": query}
    if raw is not None:
        kwargs["content"] = raw
    elif body is not None:
        kwargs["content"] = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    try:
        r = shared_api.client.request(method, route, **kwargs)
    except Exception as exc:  # an invalid URL built by hypothesis is the client's problem
        if "URL" in type(exc).__name__ or "url" in str(exc).lower():
            return
        raise
    assert r.status_code < 500, (method, route, r.status_code, r.text)
    if r.status_code >= 400 and method != "HEAD":
        assert set(r.json()) >= {"error", "error_description"}, r.text


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from issuer.core.authority import init_issuer

    home = tmp_path_factory.mktemp("fuzz-home")
    auth = init_issuer(home, issuer="https://issuer.example.com", alg="ES256", actor="t", env={})
    api = Api(auth)
    api.auth.tokens.create("rl", role="auditor", templates=[], rate_limit=None, actor="t",
                           channel="cli", now=api.auth.now())
    yield api
    auth.close()


def test_jwks_rechecks_the_keystore_at_most_once_per_interval(auth: Authority) -> None:
    app = create_app(auth, jwks_recheck=0.3)
    ticks = [1000.0]
    app.state.jwks_cache.monotonic = lambda: ticks[0]
    client = TestClient(app)
    before = client.get("/.well-known/jwks.json").json()
    new = auth.keys.generate("Ed25519", actor="cli-user", channel="cli")
    ticks[0] += 0.29
    assert client.get("/.well-known/jwks.json").json() == before  # within the interval
    ticks[0] += 0.02
    assert new.kid in {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}


@pytest.mark.parametrize("raw", [
    '{"template": "desktop-agent", "claims": {"software_version": NaN}}',
    '{"template": "desktop-agent", "claims": {"software_version": Infinity}}',
    '{"template": "desktop-agent", "claims": {"software_version": "\\ud800"}}',
    '{"template": "desktop-agent", "claims": {"software_version": "1", "tos_uri": ["\\udfff"]}}',
])
def test_unencodable_claim_values_are_a_400_for_that_request_alone(api: Api, raw: str) -> None:
    before = api.auth.audit.count_statements()
    r = api.client.post("/v1/statements", content=raw.encode(), headers={
        **api.h("ci-desktop"), "Content-Type": "application/json"})
    body = assert_error(r, 400, "invalid_request")
    assert "Error" not in body["error_description"] and "/" not in body["error_description"]
    ok = api.mint("ci-desktop", "desktop-agent", {"software_version": "2"})
    assert ok.status_code == 201, ok.text
    assert api.auth.audit.count_statements() == before + 1


def test_health_and_mint_say_when_no_key_can_sign(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    kid = api.auth.keystore.active().kid
    pem = api.auth.config.keys_dir / f"{kid}.pem"
    pem.write_bytes(b"broken: not a PEM key at all\n")
    health = api.client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert str(api.auth.config.keys_dir) not in health.text
    r = api.mint("ci-desktop", "desktop-agent", {"software_version": "1"})
    body = assert_error(r, 503, "keystore_error")
    assert str(api.auth.config.keys_dir) not in body["error_description"]
    assert "/" not in body["error_description"]


def test_a_mistyped_template_gets_a_suggestion_within_the_callers_reach(api: Api) -> None:
    admin = assert_error(api.mint("admin", "mcp-conector"), 404, "not_found")
    assert "did you mean 'mcp-connector'?" in admin["error_description"]
    minter = assert_error(api.mint("ci-desktop", "desktop-agnt"), 403, "insufficient_scope")
    assert "did you mean 'desktop-agent'?" in minter["error_description"]
    # a minter learns no template it may not mint: mcp-connector is not ci-desktop's
    other = assert_error(api.mint("ci-desktop", "mcp-conector"), 403, "insufficient_scope")
    assert "did you mean" not in other["error_description"]


def test_historical_keys_are_signed_once_until_the_keyring_changes(api: Api,
                                                                   clock: FixedClock) -> None:
    # ES256 signatures are randomised: a re-signed document never repeats byte for byte.
    first = api.client.get("/.well-known/historical-keys")
    assert first.status_code == 200
    assert api.client.get("/.well-known/historical-keys").text == first.text
    max_age = int(first.headers["cache-control"].rsplit("=", 1)[1])
    clock.advance(max_age)  # the cached document is as old as a verifier may keep it
    renewed = api.client.get("/.well-known/historical-keys").text
    assert renewed != first.text
    api.auth.keys.rotate(actor="cli-user", channel="cli", force=True)
    rotated = api.client.get("/.well-known/historical-keys").text
    assert rotated != renewed
    assert api.client.get("/.well-known/historical-keys").text == rotated


def assert_no_leak(response: Any, home: Path) -> None:
    """A failure on the issuer's side tells the caller its kind, never paths or library text."""
    assert response.status_code == 503, (response.status_code, response.text)
    body = response.json()
    assert set(body) >= {"error", "error_description"}
    for secret in (str(home), "sqlite", "Error", "Traceback", ".pem", "issuer.db"):
        assert secret not in response.text, (secret, response.text)


def test_errors_on_public_routes_do_not_leak_paths_or_exception_text(api: Api, home: Path) -> None:
    minted = api.mint().json()
    status_uri = verify(minted["software_statement"], jwks=api.auth.jwks(),
                        issuer="https://issuer.example.com").claims["status"]["status_list"]["uri"]
    list_path = status_uri.removeprefix("https://issuer.example.com")
    assert api.client.get("/healthz").status_code == 200
    # A broken database under the running service: every page is garbage.
    size = (home / "issuer.db").stat().st_size
    (home / "issuer.db").write_bytes(b"\xff" * size)
    assert_no_leak(api.mint(), home)
    # What SQLite still holds in its page cache answers; nothing leaks either way. (The service
    # never opens the database file itself: closing any descriptor of it would drop SQLite's
    # POSIX locks, https://sqlite.org/howtocorrupt.html section 2.2.)
    for response in (api.client.get("/healthz"), api.client.get(list_path),
                     api.client.get("/v1/log/checkpoint")):
        assert response.status_code in (200, 503)
        assert str(home) not in response.text and "sqlite" not in response.text


def test_a_broken_key_file_is_a_503_without_its_path(api: Api, home: Path) -> None:
    for pem in (home / "keys").glob("*.pem"):
        pem.write_text("not a key\n")
    for response in (api.client.get("/healthz"), api.mint()):
        assert_no_leak(response, home)
