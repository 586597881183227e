"""Minting: claims, header, digest, mint-time values, batches, template change records."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from issuer.core.authority import Authority
from issuer.core.encoding import b64url_decode
from issuer.core.errors import (
    InvalidClientMetadata,
    InvalidRedirectURI,
    InvalidRequest,
    IssuerError,
)
from issuer.core.statements import MintRequest
from issuer.store.audit import AuditStore
from tests.conftest import START, Cli, assert_one_line_error


def decode(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def mint(auth: Authority, template: str = "mcp-connector", **values: object):
    values.setdefault("software_version", "1.4.2")
    return auth.mint(MintRequest(template, dict(values)), principal="alice", channel="cli")


def test_statement_claims_header_and_digest(auth: Authority) -> None:
    result = mint(auth)
    header, payload = decode(result.software_statement)
    key = auth.keystore.active()
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
    template = auth.templates.load("mcp-connector")
    for claim, value in template.claims.items():
        assert payload[claim] == value
    assert payload["software_version"] == "1.4.2"
    assert payload["iss"] == "https://issuer.example.com"
    assert payload["iat"] == START and payload["exp"] == START + 180 * 86400
    assert len(b64url_decode(payload["jti"])) == 16  # 128 random bits
    assert payload["jti"] == result.jti
    assert result.digest == hashlib.sha256(result.software_statement.encode("ascii")).hexdigest()
    assert (result.kid, result.iat, result.exp, result.template) == (
        key.kid, START, START + 180 * 86400, "mcp-connector")


def test_jtis_are_distinct(auth: Authority) -> None:
    results = auth.mint_many([MintRequest("desktop-agent", {"software_version": "1"})] * 200,
                             principal="alice", channel="cli")
    assert len({r.jti for r in results}) == 200
    assert len({r.digest for r in results}) == 200


def test_mint_values_override_template(auth: Authority) -> None:
    result = mint(auth, redirect_uris=["https://other.example.com/cb"])
    assert decode(result.software_statement)[1]["redirect_uris"] == ["https://other.example.com/cb"]


@pytest.mark.parametrize(
    ("values", "error", "text"),
    [
        ({"scope": "admin"}, InvalidRequest, "claim 'scope' can't be set at mint time"),
        ({"iss": "https://evil.example"}, InvalidClientMetadata, "claim 'iss'"),
        ({"jti": "chosen"}, InvalidClientMetadata, "claim 'jti'"),
        ({"exp": 4102444800}, InvalidClientMetadata, "claim 'exp'"),
        ({"iat": 0}, InvalidClientMetadata, "claim 'iat'"),
        ({"client_secret": "s"}, InvalidClientMetadata, "claim 'client_secret'"),
        ({"redirect_uris": "https://x.example/cb"}, InvalidClientMetadata, "array"),
        ({"redirect_uris": ["https://*.example.com/cb"]}, InvalidRedirectURI, "wildcard"),
        ({"software_version": 7}, InvalidClientMetadata, "claim 'software_version'"),
    ],
)
def test_bad_mint_values_are_refused_and_leave_no_record(auth: Authority, values: dict,
                                                         error: type, text: str) -> None:
    before = len(auth.audit.events())
    with pytest.raises(error) as info:
        mint(auth, **values)
    assert text in info.value.description
    assert len(auth.audit.events()) == before
    assert auth.audit.count_statements() == 0


def test_required_claim_missing(auth: Authority) -> None:
    with pytest.raises(InvalidRequest, match="required claim\\(s\\) missing: software_version"):
        auth.mint(MintRequest("mcp-connector", {}), principal="a", channel="cli")


def test_batch_is_all_or_nothing(auth: Authority) -> None:
    good = MintRequest("desktop-agent", {"software_version": "1"})
    bad = MintRequest("mcp-connector", {"software_version": "1", "scope": "x"})
    with pytest.raises(IssuerError, match="^item 3: "):
        auth.mint_many([good, good, bad, good], principal="a", channel="cli")
    assert auth.audit.count_statements() == 0
    assert auth.audit.events(type_prefix="template.") == []


def test_a_batch_written_in_chunks_is_still_one_transaction(auth: Authority) -> None:
    """A batch is signed and written a chunk at a time (memory), inside one transaction: an
    interruption after the first chunks were written records nothing of the batch, and the
    log goes on from where it was."""
    from issuer.core.authority import RECORD_CHUNK

    before = (auth.audit.count_statements(), auth.log.size())
    request = MintRequest("desktop-agent", {"software_version": "1"})
    total = 2 * RECORD_CHUNK + 7
    signed = [0]

    def interrupted(n: int) -> None:
        signed[0] += n
        if signed[0] == 2 * RECORD_CHUNK + 3:  # two chunks written, the third being signed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        auth.mint_many([request] * total, principal="a", channel="cli", progress=interrupted)
    assert (auth.audit.count_statements(), auth.log.size()) == before
    committing: list[int] = []
    results = auth.mint_many([request] * total, principal="a", channel="cli",
                             committing=committing.append)
    assert committing == [total] and len(results) == total
    assert [r.log_index for r in results] == sorted({r.log_index for r in results})
    assert auth.audit.count_statements() == before[0] + total
    assert auth.audit.statement(results[-1].jti).software_statement == \
        results[-1].software_statement


def test_nothing_is_returned_when_the_record_cannot_be_written(
        auth: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: AuditStore, record: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(AuditStore, "record_statements", broken)
    with pytest.raises(IssuerError, match="audit store .*disk I/O error") as info:
        mint(auth)
    assert info.value.error == "temporarily_unavailable"
    monkeypatch.undo()
    assert auth.audit.count_statements() == 0
    assert auth.audit.events(type_prefix="template.") == []  # rolled back with it


def test_template_change_is_recorded_at_next_mint(auth: Authority, home: Path) -> None:
    mint(auth)
    mint(auth)  # same content: no new version
    path = home / "templates" / "mcp-connector.toml"
    path.write_text(path.read_text().replace(
        'redirect_uris = ["https://connectors.example.com/calendar/oauth/callback"]',
        'redirect_uris = ["https://connectors.example.com/calendar/oauth/callback", '
        '"https://connectors.example.com/calendar/oauth/callback2"]'))
    mint(auth)
    history = auth.audit.template_history("mcp-connector")
    assert [e.type for e in history] == ["template.recorded", "template.changed"]
    first, changed = history
    assert changed.data["old_digest"] == first.data["digest"]
    assert changed.data["new_digest"] == auth.templates.load("mcp-connector").digest
    assert changed.data["changes"] == [{
        "path": "claims.redirect_uris",
        "old": ["https://connectors.example.com/calendar/oauth/callback"],
        "new": ["https://connectors.example.com/calendar/oauth/callback",
                "https://connectors.example.com/calendar/oauth/callback2"],
        "added": ["https://connectors.example.com/calendar/oauth/callback2"],
        "removed": []}]
    records = auth.audit.statements()
    assert records[0].template_digest == first.data["digest"]
    assert records[2].template_digest == changed.data["new_digest"]


def test_parent_template_change_is_a_change_of_the_child(auth: Authority, home: Path) -> None:
    mint(auth, "workflow-runner")
    base = home / "templates" / "publisher-base.toml"
    base.write_text(base.read_text().replace('"security@example.com"',
                                             '"security@example.com", "oncall@example.com"'))
    mint(auth, "workflow-runner")
    changed = auth.audit.template_history("workflow-runner")[-1]
    assert changed.type == "template.changed"
    assert changed.data["changes"][0]["path"] == "claims.contacts"
    assert changed.data["changes"][0]["added"] == ["oncall@example.com"]


# --- through the CLI ----------------------------------------------------------------------


def test_mint_cli_prints_the_statement(cli: Cli) -> None:
    result = cli("mint", "desktop-agent", "--set", "software_version=3.1.0")
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert decode(token)[1]["software_version"] == "3.1.0"
    out = json.loads(cli("mint", "desktop-agent", "--set", "software_version=3.1.1",
                         "--json").stdout)
    assert set(out) == {"software_statement", "jti", "digest", "kid", "iat", "exp", "template",
                        "log_index"}


def test_mint_cli_array_claims(cli: Cli) -> None:
    repeated = cli("mint", "mcp-connector", "--set", "software_version=1",
                   "--set", "redirect_uris=https://a.example.com/cb",
                   "--set", "redirect_uris=https://b.example.com/cb")
    assert repeated.exit_code == 0, repeated.stderr
    assert decode(repeated.stdout.strip())[1]["redirect_uris"] == [
        "https://a.example.com/cb", "https://b.example.com/cb"]
    as_json = cli("mint", "mcp-connector", "--set", "software_version=1",
                  "--set-json", 'redirect_uris=["https://c.example.com/cb"]')
    assert decode(as_json.stdout.strip())[1]["redirect_uris"] == ["https://c.example.com/cb"]
    scalar = cli("mint", "mcp-connector", "--set", "software_version=1",
                 "--set-json", 'redirect_uris="https://c.example.com/cb"')
    assert_one_line_error(scalar, 1, "claim 'redirect_uris'", "array")
    twice = cli("mint", "mcp-connector", "--set", "software_version=1", "--set",
                "software_version=2")
    assert_one_line_error(twice, 2, "given twice")


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["mint"], 2, "missing TEMPLATE"),
        (["mint", "nope"], 1, "no template named 'nope'"),
        (["mint", "../../etc/passwd"], 1, "no template named"),
        (["mint", "desktop-agent", "--set", "noequals"], 2, "--set expects claim=value"),
        (["mint", "desktop-agent", "--set-json", "x={bad"], 2, "not valid JSON"),
        (["mint", "desktop-agent", "--batch", "f.jsonl"], 2, "don't give TEMPLATE"),
        (["mint", "desktop-agent"], 1, "required claim(s) missing: software_version"),
    ],
)
def test_mint_cli_errors(cli: Cli, args: list[str], code: int, text: str) -> None:
    assert_one_line_error(cli(*args), code, text)


def test_mint_out_file(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "statement.jwt"
    result = cli("mint", "desktop-agent", "--set", "software_version=1", "--out", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text().count(".") == 2


def test_batch_cli(cli: Cli, tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in [
        {"template": "desktop-agent", "claims": {"software_version": "1.0"}},
        {"template": "mcp-connector", "claims": {"software_version": "2.0"}},
        {"template": "workflow-runner", "claims": {"software_version": "3.0"}},
    ]) + "\n\n")
    result = cli("mint", "--batch", str(batch), "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["template"] for line in lines] == ["desktop-agent", "mcp-connector",
                                                    "workflow-runner"]
    listed = json.loads(cli("audit", "list", "--json").stdout)
    assert [r["jti"] for r in listed] == [line["jti"] for line in lines]


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ('{"template": "desktop-agent", "claims": {"software_version": "1"}}\n{oops\n',
         "batch.jsonl:2: not valid JSON"),
        ('[1, 2]\n', "batch.jsonl:1: must be a JSON object"),
        ('{"template": "desktop-agent", "claims": [], "x": 1}\n', "unknown member(s) x"),
        ('{"template": 5}\n', "'template' must be a template name string"),
        ('{"template": "desktop-agent", "claims": "x"}\n', "'claims' must be a JSON object"),
        ("\n\n", "no mint requests"),
        # the line number, counting blank lines, names the failing request (not its item number)
        ('{"template": "desktop-agent", "claims": {"software_version": "1"}}\n\n'
         '{"template": "desktop-agent", "claims": {}}\n', "batch.jsonl:3: "),
        ('{"template": "desktop-agent", "claims": {"software_version": "1"}}\n\n'
         '{"template": "desktop-agnt", "claims": {}}\n',
         "batch.jsonl:3: no template named 'desktop-agnt'"),
    ],
)
def test_bad_batch_files_mint_nothing(cli: Cli, tmp_path: Path, content: str, text: str) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text(content)
    result = cli("mint", "--batch", str(batch))
    assert result.exit_code in (1, 2)
    assert_one_line_error(result, result.exit_code, text)
    assert result.stdout == ""
    assert json.loads(cli("audit", "list", "--json").stdout) == []


def test_rules_across_claims_rerun_on_mint_time_values(auth: Authority, home: Path) -> None:
    """A value allowed alone can break a rule with the template's other claims."""
    (home / "templates" / "runner.toml").write_text(
        'extends = "workflow-runner"\n'
        'overridable = ["software_version", "token_endpoint_auth_method"]\n')
    before = auth.audit.count_statements()
    with pytest.raises(InvalidClientMetadata, match="client_credentials needs an authenticated"):
        mint(auth, "runner", software_version="1", token_endpoint_auth_method="none")
    assert auth.audit.count_statements() == before
    assert mint(auth, "runner", software_version="1",
                token_endpoint_auth_method="private_key_jwt")
