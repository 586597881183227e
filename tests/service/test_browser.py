"""The web view in a real browser: Playwright driving the system Chromium against a real
`issuer serve` on loopback, with JavaScript on and off.

Every page visited is screenshotted into ``build/web-screenshots/`` (a test artifact to look
at); with ``WEB_DOC_SCREENSHOTS=1`` the same pictures are written to ``docs/images/`` for
docs/web.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from issuer.core.authority import Authority
from tests.service.test_served import Served, free_port, new_home, start

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Headless, and none of Chromium's own background connections (the test network refuses them).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "web-screenshots"
DOC_IMAGES = ROOT / "docs" / "images"
HOSTILE_NAME = "<script>window.pwned = 1</script><b>Bold</b> Connector"


@dataclass
class Site:
    served: Served
    auditor: str
    admin: str
    jti_v1: str
    jti_v2: str
    jti_hostile: str
    template_change: str


def mint(served: Served, secret: str, template: str, version: str) -> str:
    response = httpx.post(f"{served.url}/v1/statements", json={
        "template": template, "claims": {"software_version": version}},
        headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["jti"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make system-packages`")
    home, env = new_home(tmp_path_factory.mktemp("web"), "https://issuer.example.com",
                         rate_limit='"unlimited"')
    templates = home / "templates"
    (templates / "hostile-connector.toml").write_text(
        'extends = "mcp-connector"\ndescription = "A publisher that names its client in markup"'
        f'\n[claims]\nclient_name = {json.dumps(HOSTILE_NAME)}\n')
    port = free_port()
    process = start(home, env, port)
    served = Served(home, f"http://127.0.0.1:{port}", process, env)
    # Setup beside the running service, on the same files, in this process (as quick as the
    # CLI's commands, without a Python start-up each).
    setup = Authority.from_config(home / "issuer.toml", env={})

    def token(name: str, role: str) -> str:
        return setup.tokens.create(name, role=role, templates=[], rate_limit=None,
                                   actor="test", channel="cli", now=setup.now())[1]

    try:
        minter = token("ci", "admin")
        jti_v1 = mint(served, minter, "mcp-connector", "1.0.0")
        first_kid = setup.keystore.active().kid
        # Some key history for the timeline: two rotations, and the first key revoked.
        for _ in range(2):
            setup.keys.rotate(actor="test", channel="cli", force=True)
        # A template change between two mints: the second statement's version has a diff.
        path = templates / "mcp-connector.toml"
        path.write_text(path.read_text().replace(
            'scope = "calendar.read calendar.events.write"', 'scope = "calendar.read"'))
        jti_v2 = mint(served, minter, "mcp-connector", "2.0.0")
        for n in range(3):
            mint(served, minter, "desktop-agent", f"0.{n}")
        jti_hostile = mint(served, minter, "hostile-connector", "6.6.6")
        setup.keys.revoke(first_kid, "superseded", actor="test", channel="cli")
        yield Site(served, token("web-auditor", "auditor"), token("web-admin", "admin"),
                   jti_v1, jti_v2, jti_hostile, "claims.scope")
    finally:
        setup.close()
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def shoot(page: Any, name: str, focus: str | None = None, doc: bool = True) -> None:
    """Keep a full-page screenshot as a test artifact; with WEB_DOC_SCREENSHOTS=1 also a
    small one for the docs: the window's view, scrolled to ``focus`` when given."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if doc and os.environ.get("WEB_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(exist_ok=True)
        if focus is not None:
            page.locator(focus).scroll_into_view_if_needed()
        page.screenshot(path=str(DOC_IMAGES / f"web-{name}.png"))


def sign_in(page: Any, url: str, secret: str) -> None:
    page.fill("#token", secret)
    page.click("form.sign-in button")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_auditor_journey(site: Site, browser: Any, javascript: bool) -> None:
    """Sign in, filter to a statement minted here, open it, see its proof checked, follow to
    the template diff, sign out and be refused: the same with JavaScript on and off."""
    url = site.served.url
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1100, "height": 720})
    page = context.new_page()
    suffix = "" if javascript else "-nojs"

    page.goto(f"{url}/ui/statements")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
    sign_in(page, url, "ssi_AAAAAAAAAAAA." + "A" * 43)
    expect(page.locator(".note")).to_have_text("Sign-in refused: that token is not valid.")
    if javascript:
        shoot(page, "sign-in")
    sign_in(page, url, site.auditor)
    expect(page).to_have_url(f"{url}/ui/statements")
    expect(page.locator("table.statements tbody tr")).to_have_count(6)
    if javascript:
        shoot(page, "statements")

    # The filter form puts the filter in the URL: this view can be shared.
    page.select_option("select[name=template]", "mcp-connector")
    page.fill("input[name=version]", "2.0.0")
    page.click("form.filters button")
    expect(page).to_have_url(re.compile(r"template=mcp-connector.*version=2\.0\.0"))
    rows = page.locator("table.statements tbody tr")
    expect(rows).to_have_count(1)
    if javascript:
        shoot(page, "statements-filtered")
    rows.first.locator("a").first.click()
    expect(page).to_have_url(f"{url}/ui/statements/{site.jti_v2}")
    expect(page.locator("h1")).to_contain_text(site.jti_v2)
    expect(page.locator("#proof")).to_have_class("verified")
    expect(page.locator("#proof")).to_contain_text("Inclusion proof checked")
    expect(page.locator("#status")).to_have_text("active")
    expect(page.locator("textarea.jwt")).to_have_value(re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$"))
    shoot(page, f"statement{suffix}", doc=javascript)
    if javascript:
        shoot(page, "statement-proof", focus="textarea.jwt")

    page.click("#template-version")
    expect(page).to_have_url(re.compile(r"/ui/templates/mcp-connector/versions/[0-9a-f]{64}$"))
    diff = page.locator("table.diff tbody tr")
    expect(diff).to_have_count(1)
    expect(diff.first.locator("th")).to_have_text(site.template_change)
    expect(diff.first.locator(".removed")).to_contain_text("calendar.events.write")
    expect(diff.first.locator(".added")).not_to_contain_text("calendar.events.write")
    if javascript:
        shoot(page, "template-version")

    session = [c for c in context.cookies() if c["name"] == "ssi_session"]
    assert len(session) == 1 and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    page.click("form.sign-out button")
    expect(page).to_have_url(f"{url}/ui/sign-in?signed_out=1")
    page.goto(f"{url}/ui/statements/{site.jti_v2}")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
    # The old cookie, put back, opens nothing: the session ended on the server.
    context.add_cookies([{k: session[0][k] for k in ("name", "value", "domain", "path")}])
    page.goto(f"{url}/ui/statements")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
    context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_markup_in_a_client_name_shows_as_text(site: Site, browser: Any,
                                               javascript: bool) -> None:
    context = browser.new_context(java_script_enabled=javascript,
                                  viewport={"width": 1100, "height": 720})
    page = context.new_page()
    page.goto(f"{site.served.url}/ui/statements/{site.jti_hostile}")
    sign_in(page, site.served.url, site.auditor)
    expect(page).to_have_url(f"{site.served.url}/ui/statements/{site.jti_hostile}")
    expect(page.locator(".claim-client_name")).to_have_text(HOSTILE_NAME)
    assert page.locator("main script, main b").count() == 0
    if javascript:
        assert page.evaluate("typeof window.pwned") == "undefined"
        shoot(page, "statement-hostile")
    page.goto(f"{site.served.url}/ui/statements?template=hostile-connector")
    expect(page.locator("td.client-name")).to_have_text(HOSTILE_NAME)
    context.close()


def test_every_other_page_renders(site: Site, browser: Any) -> None:
    """Keys, templates, the log with a consistency proof, tokens (admin), and the error
    pages, each looked at in the browser."""
    url = site.served.url
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    page.goto(f"{url}/ui/sign-in")
    sign_in(page, url, site.admin)
    expect(page).to_have_url(f"{url}/ui/statements")

    page.goto(f"{url}/ui/keys")
    # Four keys: the first active, retired, revoked; two rotated through; one next. (A period
    # shorter than a second, such as a key rotated in and out at once here, is not drawn.)
    expect(page.locator("svg.timeline text.kid")).to_have_count(4)
    expect(page.locator("svg.timeline rect.seg-revoked")).to_have_count(1)
    states = {c.split("seg-")[-1] for c in
              page.locator("svg.timeline rect").evaluate_all("rs => rs.map(r => r.className.baseVal)")}
    assert states == {"next", "active", "retired", "revoked"}
    shoot(page, "keys")

    page.goto(f"{url}/ui/templates")
    expect(page.locator("text=hostile-connector")).to_have_count(1)
    shoot(page, "templates")
    page.goto(f"{url}/ui/templates/mcp-connector")
    expect(page.locator("section.version")).to_have_count(2)
    shoot(page, "template")

    page.goto(f"{url}/ui/log")
    sizes = [int(s) for s in page.locator(".hint").inner_text().split(":")[1].strip(" .")
             .split(", ")]
    page.fill("input[name=first]", str(min(sizes)))
    page.fill("input[name=second]", str(max(sizes)))
    page.click("form.filters button")
    expect(page.locator("#consistency")).to_contain_text("Consistency proof checked")
    shoot(page, "log")

    page.goto(f"{url}/ui/tokens")
    expect(page.locator("td", has_text="web-auditor")).to_have_count(1)
    shoot(page, "tokens")

    response = page.goto(f"{url}/ui/statements/no-such-statement")
    assert response is not None and response.status == 404
    expect(page.locator(".error")).to_contain_text("no statement with jti 'no-such-statement'")
    shoot(page, "not-found")
    response = page.goto(f"{url}/ui/statements?since=yesterday-ish")
    assert response is not None and response.status == 400
    expect(page.locator(".error")).to_contain_text("since:")
    context.close()
