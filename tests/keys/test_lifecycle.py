"""Key lifecycle: pre-publication, scheduled rotation over a year, retirement by need,
revocation and the historical keys document."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from issuer.core.authority import Authority
from issuer.core.clock import FixedClock
from issuer.core.encoding import b64url_decode
from issuer.core.errors import Conflict, InvalidSoftwareStatement, UsageError
from issuer.core.statements import MintRequest
from issuer.service.app import create_app
from issuer.verifier.statement import verify
from tests.conftest import START, Cli, assert_one_line_error, write_template

DAY = 86400
ISS = "https://issuer.example.com"


def configure(home: Path, **values: str) -> None:
    text = (home / "issuer.toml").read_text()
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    (home / "issuer.toml").write_text(text)


def lifetimes(home: Path) -> None:
    for days in (1, 7, 90, 180):
        write_template(home, f"t{days}d", f'lifetime = "{days}d"\n[claims]\nsoftware_id = "s{days}"\n'
                       'grant_types = ["client_credentials"]\nresponse_types = []\n'
                       'token_endpoint_auth_method = "private_key_jwt"\n'
                       'jwks_uri = "https://app.example.com/jwks.json"\n')


def authority(home: Path, clock: FixedClock) -> Authority:
    return Authority.from_config(home / "issuer.toml", env={}, clock=clock)


def test_rotation_waits_for_pre_publication(home: Path) -> None:
    clock = FixedClock(START)
    auth = authority(home, clock)
    first = auth.keystore.active()
    [nxt] = auth.keys.by_state("next")
    with pytest.raises(Conflict, match="published for 0s but verifiers may cache the JWKS for 300s"):
        auth.keys.rotate(actor="t", channel="cli")
    clock.advance(299)
    with pytest.raises(Conflict):
        auth.keys.rotate(actor="t", channel="cli")
    clock.advance(1)
    active = auth.keys.rotate(actor="t", channel="cli")
    assert active.kid == nxt.kid and active.activated_at == START + 300
    states = {k.kid: k.state for k in auth.keystore.keys()}
    assert states[first.kid] == "retired" and states[nxt.kid] == "active"
    [newer] = auth.keys.by_state("next")
    assert newer.published_at == START + 300
    activated = auth.audit.events(type_prefix="key.activated")[-1]
    assert activated.data["forced"] is False and activated.data["published_for"] == 300


def test_wait_and_force(home: Path) -> None:
    clock = FixedClock(START)
    auth = authority(home, clock)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    auth.keys.sleep = sleep
    auth.keys.rotate(actor="t", channel="cli", wait=True)
    assert sum(slept) == 300
    forced = auth.keys.rotate(actor="ops", channel="cli", force=True)
    event = auth.audit.events(type_prefix="key.activated")[-1]
    assert event.subject == forced.kid and event.data["forced"] is True and event.actor == "ops"


def test_retired_key_stays_exactly_as_long_as_its_statements(home: Path) -> None:
    lifetimes(home)
    clock = FixedClock(START)
    auth = authority(home, clock)
    old = auth.keystore.active()
    auth.mint(MintRequest("t7d"), principal="p", channel="cli")
    clock.advance(DAY)
    auth.mint(MintRequest("t90d"), principal="p", channel="cli")  # exp = START + 91d
    clock.advance(DAY)
    auth.keys.rotate(actor="t", channel="cli")
    deadline = START + 91 * DAY + DAY  # latest exp + 1d grace
    assert auth.keys.retention_deadline(auth.keystore.get(old.kid)) == deadline
    clock.t = deadline - 1
    assert old.kid in {k["kid"] for k in auth.jwks()["keys"]}
    assert auth.keys.expire_due(actor="t", channel="cli") == []
    clock.t = deadline
    assert old.kid not in {k["kid"] for k in auth.jwks()["keys"]}  # never served past it
    [expired] = auth.keys.expire_due(actor="t", channel="cli")
    assert expired.kid == old.kid and auth.keystore.get(old.kid).state == "expired"
    assert auth.audit.events(type_prefix="key.expired")[0].subject == old.kid


def test_a_year_of_scheduled_rotation(home: Path) -> None:
    """Every day for a year: maintenance runs, statements of four lifetimes are minted weekly,
    and every unexpired statement verifies against the served JWKS, which never holds an
    expired key and is never cacheable past the next change the issuer knows about."""
    configure(home, rotation_period='"30d"')
    lifetimes(home)
    clock = FixedClock(START)
    auth = authority(home, clock)
    client = TestClient(create_app(auth, jwks_recheck=0), raise_server_exceptions=False)
    minted: list[tuple[str, int]] = []
    rotations = 0
    for day in range(366):
        rotations += sum("rotated" in line for line in auth.keys.maintain())
        if day % 7 == 0:
            for template in ("t1d", "t7d", "t90d", "t180d"):
                result = auth.mint(MintRequest(template), principal="pipeline", channel="http")
                minted.append((result.software_statement, result.exp))
        response = client.get("/.well-known/jwks.json")
        served = response.json()
        now = int(clock.now())
        for token, exp in minted:
            if exp > now:
                assert verify(token, jwks=served, issuer=ISS, clock=clock, leeway=0)
        states = {k.kid: k for k in auth.keystore.keys()}
        for jwk in served["keys"]:
            key = states[jwk["kid"]]
            assert key.state in ("active", "next", "retired"), key.state
            if key.state == "retired":
                assert now < auth.keys.retention_deadline(key)
        max_age = int(response.headers["cache-control"].split("max-age=")[1])
        change = auth.keys.next_change(now)
        assert max_age <= 300 and (change is None or max_age <= change - now)
        clock.advance(DAY)
    assert rotations == 12
    final = {k.state for k in auth.keystore.keys()}
    assert {"active", "next", "retired", "expired"} <= final
    assert len(served["keys"]) <= 9  # retired keys leave: the JWKS does not grow without bound


def test_scheduled_rotation_never_skips_pre_publication(home: Path) -> None:
    configure(home, rotation_period='"30d"')
    clock = FixedClock(START)
    auth = authority(home, clock)
    clock.advance(30 * DAY)
    [nxt] = auth.keys.by_state("next")
    auth.keys.revoke(nxt.kid, "superseded", actor="t", channel="cli")  # a fresh next appears
    assert auth.keys.maintain() == []  # due, but the new next key is not yet published long enough
    clock.advance(300)
    assert auth.keys.maintain()[0].startswith("rotated")


def test_a_scheduled_rotation_is_done_once_across_replicas(home: Path) -> None:
    """Replica B found the rotation due, then stalled; replica A rotated meanwhile. Under the
    write lock B sees the due time has moved and does not rotate a second time."""
    configure(home, rotation_period='"30d"')
    clock = FixedClock(START)
    a, b = authority(home, clock), authority(home, clock)
    clock.advance(30 * DAY + 301)
    stale_due = b.keys.rotation_due_at()
    assert stale_due is not None and clock.now() >= stale_due
    assert a.keys.maintain()[0].startswith("rotated")
    active = a.keys.by_state("active")[0].kid
    clock.advance(301)  # A's new next key is now eligible too: only the due time tells
    assert b.keys._rotate(actor="b", channel="scheduler", force=False, wait=False,
                          due=stale_due) is None
    assert b.keys.by_state("active")[0].kid == active
    assert len(b.audit.events(type_prefix="key.activated")) == 1  # A's rotation alone
    a.close()
    b.close()


def test_max_age_is_cut_short_before_known_changes(home: Path) -> None:
    configure(home, rotation_period='"30d"')
    lifetimes(home)
    clock = FixedClock(START)
    auth = authority(home, clock)
    client = TestClient(create_app(auth, jwks_recheck=0))
    clock.advance(30 * DAY - 100)
    assert client.get("/.well-known/jwks.json").headers["cache-control"] == "public, max-age=100"
    clock.advance(100)
    auth.keys.maintain()
    auth.mint(MintRequest("t1d"), principal="p", channel="cli")
    assert client.get("/.well-known/jwks.json").headers["cache-control"] == "public, max-age=300"


def test_revocation(home: Path, cli: Cli) -> None:
    clock = FixedClock(START)
    auth = authority(home, clock)
    client = TestClient(create_app(auth, jwks_recheck=0))
    old = auth.keystore.active()
    token = auth.mint(MintRequest("desktop-agent", {"software_version": "1"}), principal="p",
                      channel="cli").software_statement
    with pytest.raises(Conflict, match="use --force"):
        auth.keys.revoke(old.kid, "compromised", actor="t", channel="cli")
    with pytest.raises(UsageError, match="not one of"):
        auth.keys.revoke(old.kid, "stolen", actor="t", channel="cli", force=True)
    [nxt] = auth.keys.by_state("next")
    key, signed = auth.keys.revoke(old.kid, "compromised", actor="secops", channel="cli",
                                   force=True)
    assert (key.state, key.revocation_reason, signed) == ("revoked", "compromised", 1)
    assert auth.keystore.active().kid == nxt.kid  # the pre-published key took over at once
    assert len(auth.keys.by_state("next")) == 1
    served = client.get("/.well-known/jwks.json").json()
    assert old.kid not in {k["kid"] for k in served["keys"]}
    with pytest.raises(InvalidSoftwareStatement, match="unknown key"):
        verify(token, jwks=served, issuer=ISS, clock=clock)
    with pytest.raises(InvalidSoftwareStatement, match=r"was revoked \(compromised\)"):
        auth.verify(token)
    assert_one_line_error(cli("verify", token), 1, "was revoked (compromised)")
    with pytest.raises(Conflict, match="already revoked"):
        auth.keys.revoke(old.kid, "compromised", actor="t", channel="cli")
    # the historical keys document verifies with the active key and says why
    response = client.get("/.well-known/historical-keys")
    assert response.headers["content-type"] == "application/jwk-set+jwt"
    doc = verify_historical(response.text, served)
    entry = next(k for k in doc["keys"] if k["kid"] == old.kid)
    assert entry["revoked"] == {"revoked_at": START, "reason": "compromised"}
    assert entry["exp"] == START and entry["iat"] == START
    assert "d" not in entry
    current = next(k for k in doc["keys"] if k["kid"] == nxt.kid)
    assert "revoked" not in current and current["exp"] > START


def verify_historical(token: str, jwks: dict) -> dict:
    from joserfc import jws
    from joserfc.jwk import JWKRegistry

    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header["typ"] == "jwk-set+jwt"
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    key = JWKRegistry.import_key({k: v for k, v in jwk.items() if k != "alg"})
    payload = jws.deserialize_compact(token, key, algorithms=[header["alg"]]).payload
    doc = json.loads(payload)
    assert doc["iss"] == ISS
    return doc


def test_revoking_next_or_retired_keys(home: Path) -> None:
    clock = FixedClock(START)
    auth = authority(home, clock)
    [nxt] = auth.keys.by_state("next")
    auth.keys.revoke(nxt.kid, "superseded", actor="t", channel="cli")
    [fresh] = auth.keys.by_state("next")
    assert fresh.kid != nxt.kid
    clock.advance(300)
    old = auth.keystore.active()
    auth.keys.rotate(actor="t", channel="cli")
    key, _ = auth.keys.revoke(old.kid, "unspecified", actor="t", channel="cli")
    assert key.state == "revoked"
    assert [e.type for e in auth.audit.events(type_prefix="key.revoked")] == ["key.revoked"] * 2


def test_keys_cli_lifecycle(cli: Cli, home: Path) -> None:
    rotated = cli("keys", "rotate", "--json")  # the home's next key was published at START
    assert rotated.exit_code == 0, rotated.stderr
    refused = cli("keys", "rotate")  # the new next key was published just now
    assert_one_line_error(refused, 1, "rotation refused", "--wait", "--force")
    forced = cli("keys", "rotate", "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    new_active = json.loads(forced.stdout)["active"]
    assert cli("keys", "rotate", "--if-due").stdout.strip() == "nothing due"
    token = cli("mint", "desktop-agent", "--set", "software_version=1").stdout.strip()
    listed = json.loads(cli("keys", "list", "--json").stdout)
    by_kid = {k["kid"]: k for k in listed}
    assert by_kid[new_active]["statements"] == 1 and by_kid[new_active]["state"] == "active"
    assert_one_line_error(cli("keys", "revoke", new_active, "--reason", "compromised"), 1,
                          "use --force")
    revoked = cli("keys", "revoke", new_active, "--reason", "compromised", "--force")
    assert revoked.exit_code == 0, revoked.stderr
    assert "signed 1 statement(s), 1 still unexpired" in revoked.stdout
    assert f"issuer audit list --kid {new_active}" in revoked.stderr
    assert_one_line_error(cli("verify", token), 1, "was revoked (compromised)")
    assert [r["software_version"] for r in
            json.loads(cli("audit", "list", "--kid", new_active, "--json").stdout)] == ["1"]
    history = cli("keys", "history")
    assert "reason     compromised" in history.stdout
    revoked_rows = [k for k in json.loads(cli("keys", "history", "--json").stdout)
                    if k["state"] == "revoked"]
    assert [k["revocation_reason"] for k in revoked_rows] == ["compromised"]
    assert_one_line_error(cli("keys", "revoke", "nope", "--reason", "superseded"), 1, "no key")
    assert_one_line_error(cli("keys", "revoke", new_active, "--reason", "stolen"), 2,
                          "Invalid value for '--reason'")
