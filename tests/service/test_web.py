"""The web view's page logic through the app's own client: access, sessions, CSRF, hostile
values, bad input as 400/404 pages, and that the pages show what the JSON API shows.
The browser journeys are in test_browser.py; ``/metrics`` is at the end."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock, rfc3339
from issuer.core.config import load_config
from issuer.core.statements import parse_mint_request
from issuer.service.app import create_app
from issuer.service.web.routes import SIGN_IN_LIMIT
from tests.conftest import write_template

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Web:
    """A TestClient with tokens of each role, signing in through the form."""

    def __init__(self, auth: Authority, base_url: str = "http://127.0.0.1:8000",
                 suffix: str = "") -> None:
        self.auth = auth
        self.client = TestClient(create_app(auth), base_url=base_url, follow_redirects=False)
        self.secrets = {}
        for name, role, templates in [("auditor", "auditor", []), ("admin", "admin", []),
                                      ("ci", "minter", ["mcp-connector"])]:
            self.secrets[name] = auth.tokens.create(name + suffix, role=role, templates=templates,
                                                    rate_limit=None, actor="setup",
                                                    channel="cli", now=auth.now())[1]

    def form_csrf(self) -> str:
        page = self.client.get("/ui/sign-in")
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match
        return match.group(1)

    def sign_in(self, who: str = "auditor", secret: str | None = None, **extra: str) -> Any:
        data = {"token": secret or self.secrets[who], "csrf": self.form_csrf(), **extra}
        return self.client.post("/ui/sign-in", data=data)

    def mint(self, template: str = "mcp-connector", version: str = "1.0.0",
             principal: str = "ci") -> str:
        request = parse_mint_request({"template": template,
                                      "claims": {"software_version": version}})
        return self.auth.mint(request, principal=principal, channel="http").jti


@pytest.fixture
def web(auth: Authority) -> Iterator[Web]:
    yield Web(auth)


def page_csrf(text: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', text)
    assert match
    return match.group(1)


def jtis(text: str) -> list[str]:
    return re.findall(r'href="/ui/statements/([\w-]+)"', text)


# --- access ---------------------------------------------------------------------------------


def test_pages_need_a_sign_in_and_go_back_where_they_were(web: Web) -> None:
    r = web.client.get("/ui/statements?template=mcp-connector")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sign-in?next=%2Fui%2Fstatements%3Ftemplate%3Dmcp-connector"
    signed = web.sign_in(next="/ui/statements?template=mcp-connector")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/ui/statements?template=mcp-connector"
    assert web.client.get("/ui/statements").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/ui/",
                                    "/ui/sign-out", "/elsewhere", "/ui\\@evil"])
def test_sign_in_never_redirects_off_the_web_view(web: Web, target: str) -> None:
    assert web.sign_in(next=target).headers["location"] == "/ui/statements"


def test_session_cookie_is_httponly_strict_and_secure_over_https(auth: Authority) -> None:
    # Plain http on loopback (development) is the one case without Secure: the issuer URL is
    # https, so plain http under a public name means a TLS-terminating proxy in front.
    cases = (("http://127.0.0.1:8000", False), ("https://issuer.example.com", True),
             ("http://issuer.example.com", True))
    for n, (base, secure) in enumerate(cases):
        web = Web(auth, base, suffix=f"-{n}")
        cookies = [web.client.get("/ui/sign-in").headers["set-cookie"]]
        if base.startswith("https") or not secure:  # the client sends Secure cookies back
            cookies.append(web.sign_in().headers["set-cookie"])
            assert "ssi_session=" in cookies[-1] and "Max-Age=28800" in cookies[-1]  # 8h
        for cookie in cookies:
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
            assert ("Secure" in cookie) is secure, (base, cookie)


@pytest.mark.parametrize("secret, status, words", [
    ("ssi_AAAAAAAAAAAA." + "A" * 43, 401, "that token is not valid"),
    ("not a token", 401, "that token is not valid"),
    (None, 403, "only auditor and admin tokens"),
])
def test_wrong_or_minter_tokens_are_refused_plainly(web: Web, secret: str | None, status: int,
                                                    words: str) -> None:
    r = web.sign_in("ci", secret)
    assert r.status_code == status
    assert words in r.text and "Traceback" not in r.text
    assert "ssi_session" not in r.headers.get("set-cookie", "")


def test_a_revoked_token_cannot_sign_in_and_its_sessions_end(web: Web, auth: Authority) -> None:
    assert web.sign_in().status_code == 303
    auth.tokens.revoke("auditor", actor="t", channel="cli", now=auth.now())
    r = web.client.get("/ui/keys")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/sign-in?next=")
    again = web.sign_in()
    assert again.status_code == 401 and "not valid" in again.text


def test_sign_in_attempts_are_rate_limited_per_address(web: Web) -> None:
    for _ in range(SIGN_IN_LIMIT.count):
        assert web.sign_in("auditor", "ssi_AAAAAAAAAAAA." + "B" * 43).status_code == 401
    refused = web.sign_in()  # even the right token, until the window moves on
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "rate limit" in refused.text
    web.auth.clock.advance(60)  # type: ignore[attr-defined]
    assert web.sign_in().status_code == 303


def test_an_expired_session_goes_back_to_sign_in(web: Web, clock: FixedClock) -> None:
    web.sign_in()
    clock.advance(8 * 3600 - 1)
    assert web.client.get("/ui/statements").status_code == 200
    clock.advance(1)
    r = web.client.get("/ui/statements")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sign-in?next=%2Fui%2Fstatements&expired=1"
    page = web.client.get(r.headers["location"])
    assert "Your session ended; sign in again." in page.text


def test_sign_out_ends_the_session_on_the_server(web: Web) -> None:
    web.sign_in()
    page = web.client.get("/ui/statements")
    cookie = web.client.cookies["ssi_session"]
    out = web.client.post("/ui/sign-out", data={"csrf": page_csrf(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in?signed_out=1"
    web.client.cookies.set("ssi_session", cookie, path="/ui")  # replay the old cookie
    assert web.client.get("/ui/statements").status_code == 303


def test_forms_need_their_csrf_token_and_our_origin(web: Web) -> None:
    # Sign-in: the form's token must match its cookie (no login CSRF) ...
    r = web.client.post("/ui/sign-in", data={"token": web.secrets["auditor"], "csrf": "forged"})
    assert r.status_code == 400 and "ssi_session" not in r.headers.get("set-cookie", "")
    # ... and a post from another origin is refused even with both.
    r = web.client.post("/ui/sign-in", data={"token": web.secrets["auditor"],
                                             "csrf": web.form_csrf()},
                        headers={"Origin": "https://evil.example"})
    assert r.status_code == 400
    web.sign_in()
    page = web.client.get("/ui/statements")
    # Sign-out without the session's CSRF token changes nothing.
    r = web.client.post("/ui/sign-out", data={"csrf": "forged"})
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]
    assert web.client.get("/ui/statements").status_code == 200
    r = web.client.post("/ui/sign-out", data={"csrf": page_csrf(page.text)},
                        headers={"Origin": "https://evil.example"})
    assert r.status_code == 400
    r = web.client.post("/ui/sign-out", content=b'{"csrf": "x"}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert web.client.get("/ui/statements").status_code == 200


def test_tokens_page_is_for_admins(web: Web) -> None:
    web.sign_in("auditor")
    r = web.client.get("/ui/tokens")
    assert r.status_code == 403 and "an admin token may" in r.text
    assert 'href="/ui/tokens"' not in web.client.get("/ui/statements").text
    admin = Web(web.auth, suffix="-2")
    admin.sign_in("admin")
    page = admin.client.get("/ui/tokens")
    assert page.status_code == 200
    assert all(f"<td>{name}</td>" in page.text for name in ("auditor", "admin", "ci", "admin-2"))
    secrets = [*web.secrets.values(), *admin.secrets.values()]
    assert all(s not in page.text and s.split(".")[1] not in page.text for s in secrets)
    assert "None configured" in page.text  # no trusted publisher in this issuer.toml


def test_tokens_page_shows_expiry_last_use_and_trusted_publishers(home: Path,
                                                                   clock: FixedClock) -> None:
    with (home / "issuer.toml").open("a") as config:
        config.write('''
[[trusted_publishers]]
name = "calendar-release"
issuer = "https://token.actions.githubusercontent.com"
templates = ["mcp-connector"]
[trusted_publishers.claims]
repository = "acme/<b>calendar</b>"
repository_owner_id = "1001"
job_workflow_ref = "acme/calendar/.github/workflows/release.yml@refs/tags/*"
''')
    auth = Authority.from_config(home / "issuer.toml", env={}, clock=clock)
    try:
        web = Web(auth)
        _, secret = auth.tokens.create("pipeline", role="minter", templates=["mcp-connector"],
                                       rate_limit=None, actor="t", channel="cli",
                                       now=auth.now(), expires_in=30 * 86400)
        auth.tokens.authenticate(secret, now=auth.now())  # a use, kept to the minute
        web.sign_in("admin")
        page = web.client.get("/ui/tokens").text
        row = page.split("<td>pipeline</td>", 1)[1].split("</tr>", 1)[0]
        assert rfc3339(auth.now() + 30 * 86400) in row  # expires
        used = auth.tokens.get("pipeline").last_used_at
        assert used is not None and rfc3339(used) in row  # last used
        auditor_row = page.split("<td>auditor</td>", 1)[1].split("</tr>", 1)[0]
        assert auditor_row.count("never") == 2  # no expiry, never used
        publishers = page.split("Trusted publishers", 1)[1]
        assert "calendar-release" in publishers and "github" in publishers
        assert "job_workflow_ref = acme/calendar/.github/workflows/release.yml@refs/tags/*" \
            in publishers
        assert "&lt;b&gt;calendar&lt;/b&gt;" in publishers and "<b>calendar" not in publishers
    finally:
        auth.close()


def test_the_web_view_can_be_turned_off(home: Path, clock: FixedClock) -> None:
    auth = Authority(load_config(home / "issuer.toml", env={"ISSUER_SERVICE_WEB": "false"}),
                     clock=clock, env={})
    client = TestClient(create_app(auth), follow_redirects=False)
    for path in ("/ui/", "/ui/sign-in", "/ui/statements", "/ui/static/web.css"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found", path
    assert client.get("/metrics").status_code == 200
    auth.close()


# --- hostile values and bad input -----------------------------------------------------------


def test_every_page_sends_the_security_headers(web: Web) -> None:
    web.sign_in()
    for path in ("/ui/sign-in", "/ui/statements", "/ui/statements/nope", "/ui/keys",
                 "/ui/log", "/ui/static/web.css", "/ui/statements?status=x"):
        h = web.client.get(path).headers
        assert "default-src 'none'" in h["content-security-policy"], path
        assert "script-src" not in h["content-security-policy"]  # no script at all
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
        assert h["cache-control"] == "no-store"
    assert "content-security-policy" not in web.client.get("/healthz").headers


def test_markup_in_claims_and_templates_is_escaped(web: Web, home: Path) -> None:
    write_template(home, "hostile", f'extends = "mcp-connector"\ndescription = '
                   f'{json.dumps(HOSTILE)}\n[claims]\nclient_name = {json.dumps(HOSTILE)}\n')
    jti = web.mint("hostile")
    web.sign_in()
    for path in (f"/ui/statements/{jti}", "/ui/statements", "/ui/templates",
                 "/ui/templates/hostile", "/ui/statements?template=hostile"):
        text = web.client.get(path).text
        assert "<script>" not in text and "<img" not in text, path
        assert "&lt;script&gt;" in text or "&lt;img" in text, path
    # A filter value comes back into the form escaped too.
    text = web.client.get('/ui/statements?software_id="><script>x</script>').text
    assert "<script>" not in text and "&#34;&gt;&lt;script&gt;" in text


@pytest.mark.parametrize("path, status, words", [
    ("/ui/statements/no-such-jti", 404, "no statement with jti"),
    ("/ui/statements/" + "0" * 64, 404, "no statement with digest"),
    ("/ui/templates/no-such-template", 404, "no-such-template"),
    ("/ui/templates/..%2Fissuer", 404, "not found"),
    ("/ui/templates/mcp-connector/versions/abc", 404, "no recorded version"),
    ("/ui/no-such-page", 404, "not found"),
    ("/ui/statements?status=valid", 400, "status: &#39;valid&#39; is not one of"),
    ("/ui/statements?since=yesterday", 400, "since:"),
    ("/ui/statements?since=2026-02-01&until=2026-01-01", 400, "until: must be after since"),
    ("/ui/statements?cursor=nonsense", 400, "cursor:"),
    ("/ui/statements?software_id=" + "x" * 300, 400, "at most 256"),
    ("/ui/log?first=abc&second=2", 400, "whole numbers"),
    ("/ui/log?first=5&second=2", 400, "first &lt;= second"),
    ("/ui/log?first=1&second=99999", 400, "the tree size"),
])
def test_bad_input_is_a_plain_page(web: Web, path: str, status: int, words: str) -> None:
    web.mint()
    web.sign_in()
    r = web.client.get(path)
    assert r.status_code == status, (path, r.text)
    assert r.headers["content-type"].startswith("text/html")
    assert words in r.text, r.text
    assert "Traceback" not in r.text


# --- the pages show what the API shows ------------------------------------------------------


def test_statement_filters_match_the_api(web: Web, auth: Authority, clock: FixedClock) -> None:
    first = web.mint(version="1.0.0")
    clock.advance(86400)
    second = web.mint(version="2.0.0", principal="release-bot")
    third = web.mint(version="2.0.0")
    auth.set_status(third, "revoked", "key leak in build", actor="t", channel="cli")
    web.sign_in("admin")
    api = {"Authorization": f"Bearer {web.secrets['admin']}"}
    cases = {"version=2.0.0": [second, third], "principal=release-bot": [second],
             "status=revoked": [third], "status=active": [first, second],
             "until=2026-09-21": [first], "since=2026-09-22": [second, third],
             "template=desktop-agent": [], "kid=" + auth.keystore.active().kid: [first, second, third]}
    for query, expected in cases.items():
        page = jtis(web.client.get(f"/ui/statements?{query}").text)
        listed = [s["jti"] for s in web.client.get(f"/v1/statements?{query}", headers=api)
                  .json()["statements"]]
        assert page == listed == expected, query
    clock.advance(200 * 86400)  # past the template's 180 days (and the session's 8 hours)
    web.sign_in("admin")
    assert jtis(web.client.get("/ui/statements?status=expired").text) == [first, second]


def test_statements_of_a_revoked_key_count_as_revoked(web: Web, auth: Authority) -> None:
    jti = web.mint()
    auth.keys.revoke(auth.keystore.active().kid, "compromised", actor="t", channel="cli",
                     force=True)
    web.sign_in("admin")
    api = {"Authorization": f"Bearer {web.secrets['admin']}"}
    for status, expected in (("revoked", [jti]), ("active", [])):
        page = web.client.get(f"/ui/statements?status={status}").text
        listed = web.client.get(f"/v1/statements?status={status}", headers=api).json()
        assert jtis(page) == [s["jti"] for s in listed["statements"]] == expected, status
    assert "status-revoked" in web.client.get("/ui/statements?status=revoked").text


def test_statements_page_paginates_with_the_filter_in_the_links(web: Web) -> None:
    minted = [web.mint(version="3.0.0") for _ in range(55)]
    web.sign_in()
    page = web.client.get("/ui/statements?version=3.0.0")
    assert jtis(page.text) == minted[:50]
    match = re.search(r'href="(/ui/statements\?version=3.0.0&amp;cursor=[\w-]+)" rel="next"',
                      page.text)
    assert match
    second = web.client.get(match.group(1).replace("&amp;", "&"))
    assert jtis(second.text) == minted[50:]
    assert 'rel="next"' not in second.text


def test_statement_page_shows_the_record_and_its_checked_proof(web: Web, auth: Authority,
                                                                home: Path) -> None:
    jti = web.mint()
    record = auth.audit.statement(jti)
    web.sign_in()
    text = web.client.get(f"/ui/statements/{jti}").text
    for fact in (record.digest, record.kid, record.template_digest, record.software_statement,
                 "Inclusion proof checked", "status-active"):
        assert fact in text
    # By digest too, like the API.
    assert web.client.get(f"/ui/statements/{record.digest}").status_code == 200
    auth.set_status(jti, "revoked", "compromised build", actor="t", channel="cli")
    text = web.client.get(f"/ui/statements/{jti}").text
    assert "status-revoked" in text and "compromised build" in text
    # Rewrite the logged issuance behind the log's back: the page says the proof fails.
    db = sqlite3.connect(home / "issuer.db")
    db.execute("UPDATE events SET data = replace(data, 'Example Calendar', 'Evil Calendar') "
               "WHERE idx = ?", (record.log_index,))
    db.commit()
    db.close()
    text = web.client.get(f"/ui/statements/{jti}").text
    assert "Inclusion proof NOT verified" in text and "Inclusion proof checked" not in text


def test_template_history_shows_each_version_and_its_diff(web: Web, home: Path) -> None:
    web.mint()
    path = home / "templates" / "mcp-connector.toml"
    path.write_text(path.read_text().replace('lifetime = "180d"', 'lifetime = "90d"'))
    jti = web.mint()
    record = web.auth.audit.statement(jti)
    web.sign_in()
    page = web.client.get("/ui/templates/mcp-connector").text
    assert page.count('class="version"') == 2 and "lifetime" in page
    version = web.client.get(f"/ui/templates/mcp-connector/versions/{record.template_digest}")
    assert version.status_code == 200
    assert re.search(r'<th class="mono">lifetime</th>\s*<td class="removed"><pre>&#34;180d&#34;'
                     r'</pre></td>\s*<td class="added"><pre>&#34;90d&#34;', version.text)


# --- metrics --------------------------------------------------------------------------------


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert match, (name, labels)
    return float(match.group(1))


def test_metrics_count_mints_refusals_and_read_the_issuers_state(web: Web, auth: Authority,
                                                                 clock: FixedClock) -> None:
    api = {"Authorization": f"Bearer {web.secrets['ci']}"}
    for version in ("1.0.0", "1.0.1"):
        assert web.client.post("/v1/statements", headers=api, json={
            "template": "mcp-connector", "claims": {"software_version": version}}).status_code == 201
    assert web.client.post("/v1/statements", headers=api, json={
        "template": "desktop-agent", "claims": {}}).status_code == 403
    assert web.client.post("/v1/statements", json={"template": "x"}).status_code == 401
    assert web.client.post("/v1/statements", headers=api, json={
        "template": "mcp-connector", "claims": {"client_name": "x"}}).status_code == 400
    web.mint("desktop-agent", principal="someone")  # the CLI's: not this process's count
    r = web.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert metric(text, "issuer_statements_minted_total",
                  '{channel="http",template="mcp-connector"}') == 2
    assert "issuer_statements_minted_total{channel=\"http\",template=\"desktop-agent\"}" not in text
    assert metric(text, "issuer_mint_refusals_total", '{reason="insufficient_scope"}') == 1
    assert metric(text, "issuer_mint_refusals_total", '{reason="invalid_token"}') == 1
    assert metric(text, "issuer_mint_refusals_total", '{reason="invalid_request"}') == 1
    assert metric(text, "issuer_mint_duration_seconds_count") == 2
    active = auth.keystore.active()
    assert metric(text, "issuer_key_age_seconds", f'{{kid="{active.kid}",state="active"}}') == \
        auth.now() - active.created_at
    ninety_days = 90 * 86400
    assert metric(text, "issuer_key_rotation_due_seconds") == \
        active.created_at + ninety_days - auth.now()
    list_id = auth.audit.statement(web.mint()).claims["status"]["status_list"]["uri"].rsplit("/")[-1]
    text = web.client.get("/metrics").text
    assert metric(text, "issuer_status_list_entries_used", f'{{list="{list_id}"}}') == 4
    assert metric(text, "issuer_status_list_fill_ratio", f'{{list="{list_id}"}}') == 4 / 131072
    assert metric(text, "issuer_log_tree_size") == auth.log.latest()[0].size
    # No scheduled rotation happened (no maintenance runs here): the gauge goes negative,
    # which is what the example alert in docs/operations.md watches.
    clock.advance(ninety_days + 7200)
    assert metric(web.client.get("/metrics").text, "issuer_key_rotation_due_seconds") == -7200


# --- the keys picture -------------------------------------------------------------------------


def test_key_timeline_periods() -> None:
    from issuer.keys.keystore import KeyInfo
    from issuer.service.web.timeline import layout, periods

    def key(**times: Any) -> KeyInfo:
        return KeyInfo(kid="k", alg="ES256", state="active", created_at=100, public_jwk={},
                       **times)

    assert periods(key(published_at=100, activated_at=200), 500) == [
        ("next", 100, 200), ("active", 200, 500)]
    # Made active at creation: never next. Revoked while retired: retired until then.
    assert periods(key(activated_at=100, retired_at=300, revoked_at=400), 500) == [
        ("active", 100, 300), ("retired", 300, 400), ("revoked", 400, 500)]
    assert periods(key(published_at=100, activated_at=150, retired_at=200, expired_at=250),
                   500) == [("next", 100, 150), ("active", 150, 200), ("retired", 200, 250),
                            ("expired", 250, 500)]
    picture = layout([key(activated_at=100), key(published_at=300)], 1100)
    first, second = picture.rows
    assert first.segments[0].x == picture.label  # the axis starts at the first creation
    assert second.segments[0].x > first.segments[0].x
    assert first.segments[0].x + first.segments[0].width == picture.now_x
