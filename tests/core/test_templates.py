"""docs/templates.md: every rule refuses a bad template with a message naming file, claim, rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from issuer.core.errors import NotFound, TemplateError
from issuer.core.templates import TemplateStore
from tests.conftest import Cli, assert_one_line_error, write_template

MAX = 400 * 86400

BASE_CLAIMS: dict[str, Any] = {
    "software_id": "4f0e2c1a-0000-4000-8000-000000000001",
    "client_name": "Test Client",
    "grant_types": ["authorization_code"],
    "response_types": ["code"],
    "redirect_uris": ["https://app.example.com/cb"],
    "token_endpoint_auth_method": "private_key_jwt",
    "jwks_uri": "https://app.example.com/jwks.json",
}


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, ints, booleans: JSON and TOML agree


def template_text(claims: dict[str, Any], **keys: Any) -> str:
    head = {"lifetime": "30d", **keys}
    lines = [f"{k} = {toml_value(v)}" for k, v in head.items() if v is not None]
    lines.append("[claims]")
    lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in claims.items()]
    return "\n".join(lines) + "\n"


def store(tmp_path: Path) -> TemplateStore:
    (tmp_path / "templates").mkdir(exist_ok=True)
    return TemplateStore(tmp_path / "templates", MAX)


def put(tmp_path: Path, name: str, claims: dict[str, Any], **keys: Any) -> TemplateStore:
    s = store(tmp_path)
    (s.directory / f"{name}.toml").write_text(template_text(claims, **keys))
    return s


def refused(tmp_path: Path, claims: dict[str, Any], **keys: Any) -> str:
    s = put(tmp_path, "t", claims, **keys)
    with pytest.raises(TemplateError) as info:
        s.load("t")
    return info.value.description


def without(*names: str, **extra: Any) -> dict[str, Any]:
    claims = {k: v for k, v in BASE_CLAIMS.items() if k not in names}
    claims.update(extra)
    return claims


def test_base_claims_are_valid(tmp_path: Path) -> None:
    template = put(tmp_path, "t", BASE_CLAIMS).load("t")
    assert template.claims == BASE_CLAIMS
    assert template.warnings == ()
    assert len(template.digest) == 64


# Every rule of docs/templates.md, each refused with the claim and the RFC it comes from.
RULES = [
    # RFC 7591 section 2 metadata types
    ("array where the registry says array", without(redirect_uris="https://app.example.com/cb"),
     "claim 'redirect_uris'", "array"),
    ("string where the registry says string", without(client_name=5), "claim 'client_name'",
     "string"),
    ("grant_types as a string", without(grant_types="authorization_code"), "claim 'grant_types'",
     "array"),
    ("relative client_uri", without(client_uri="example.com/about"), "claim 'client_uri'",
     "not an absolute URI"),
    ("javascript logo_uri", without(logo_uri="javascript:alert(1)"), "claim 'logo_uri'",
     "must use http or https"),
    ("tos_uri without host", without(tos_uri="https:///terms"), "claim 'tos_uri'", "no host"),
    ("language tag on a non-human-readable field", without(**{"scope#en": "a"}),
     "claim 'scope#en'", "RFC 7591 section 2.2"),
    ("malformed language tag", without(**{"client_name#not a tag": "x"}),
     "claim 'client_name#not a tag'", "BCP 47"),
    ("bad scope separator", without(scope="read  write"), "claim 'scope'", "RFC 6749 section 3.3"),
    ("quote in scope", without(scope='read "write"'), "claim 'scope'", "RFC 6749 section 3.3"),
    ("contacts as a string", without(contacts="a@example.com"), "claim 'contacts'", "array"),
    ("boolean metadata as a string", without(dpop_bound_access_tokens="yes"),
     "claim 'dpop_bound_access_tokens'", "boolean"),
    ("unknown application_type", without(application_type="desktop"),
     "claim 'application_type'", "neither 'web' nor 'native'"),
    # token endpoint authentication
    ("unregistered auth method", without(token_endpoint_auth_method="magic"),
     "claim 'token_endpoint_auth_method'", "IANA"),
    ("private_key_jwt without keys", without("jwks_uri"), "claim 'token_endpoint_auth_method'",
     "needs jwks_uri"),
    ("jwks and jwks_uri together",
     without(jwks={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
     "claim 'jwks'", "must not both be present"),
    ("private key in jwks",
     without("jwks_uri", jwks={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                                         "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}),
     "claim 'jwks'", "public keys only"),
    ("symmetric key in jwks", without("jwks_uri", jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
     "claim 'jwks'", "symmetric"),
    ("jwks not a JWK Set", without("jwks_uri", jwks={"kty": "EC"}), "claim 'jwks'", "JWK Set"),
    ("jwks_uri over http", without(jwks_uri="http://app.example.com/jwks.json"),
     "claim 'jwks_uri'", "must use https"),
    ("client_credentials on a public client",
     without("jwks_uri", token_endpoint_auth_method="none", grant_types=["client_credentials"],
             response_types=[]),
     "claim 'grant_types'", "RFC 6749 section 4.4"),
    ("tls_client_auth without a subject", without("jwks_uri", token_endpoint_auth_method="tls_client_auth"),
     "claim 'token_endpoint_auth_method'", "RFC 8705 section 2.1.2"),
    # grant_types / response_types consistency, RFC 7591 section 2.1
    ("code grant with token response", without(response_types=["token"]),
     "claim 'grant_types'", "RFC 7591 section 2.1"),
    ("implicit grant with code response", without(grant_types=["implicit"]),
     "claim 'grant_types'", "RFC 7591 section 2.1"),
    ("client_credentials with the default response type",
     without("response_types", "redirect_uris", grant_types=["client_credentials"]),
     "claim 'grant_types'", "defaults to [\"code\"]"),
    ("malformed response type", without(response_types=["code", "co-de!"]),
     "claim 'response_types'", "not a response type"),
    ("unknown grant type", without(grant_types=["authorization_code", "magic"]),
     "claim 'grant_types'", "not a known grant type"),
    # redirect_uris, RFC 8252
    ("relative redirect", without(redirect_uris=["/callback"]), "claim 'redirect_uris'",
     "not an absolute URI"),
    ("redirect with fragment", without(redirect_uris=["https://app.example.com/cb#x"]),
     "claim 'redirect_uris'", "fragment"),
    ("wildcard redirect", without(redirect_uris=["https://*.example.com/cb"]),
     "claim 'redirect_uris'", "wildcard"),
    ("redirect with userinfo", without(redirect_uris=["https://user@app.example.com/cb"]),
     "claim 'redirect_uris'", "userinfo"),
    ("http redirect off loopback", without(redirect_uris=["http://app.example.com/cb"]),
     "claim 'redirect_uris'", "non-loopback"),
    ("localhost redirect", without(redirect_uris=["http://localhost:8080/cb"]),
     "claim 'redirect_uris'", "RFC 8252 section 8.3"),
    ("custom scheme without a domain", without(redirect_uris=["myapp:/cb"]),
     "claim 'redirect_uris'", "RFC 8252 section 7.1"),
    ("javascript redirect", without(redirect_uris=["javascript:alert(1)"]),
     "claim 'redirect_uris'", "RFC 9700 section 4.1"),
    *[(f"{scheme} redirect", without(redirect_uris=[uri]), "claim 'redirect_uris'",
       "RFC 9700 section 4.1") for scheme, uri in (
        ("data", "data:text/html,<script>x</script>"), ("vbscript", "VBScript:msgbox"),
        ("file", "file:///etc/passwd"))],
    ("password grant", without(grant_types=["authorization_code", "password"]),
     "claim 'grant_types'", "RFC 9700 section 2.4"),
    ("authorization code without redirect URIs", without("redirect_uris"),
     "claim 'redirect_uris'", "needs registered redirect_uris"),
    ("implicit without redirect URIs", without("redirect_uris", grant_types=["implicit"],
                                               response_types=["token"]),
     "claim 'redirect_uris'", "needs registered redirect_uris"),
    ("private-use scheme with an authority",
     without(redirect_uris=["com.example.app://host/cb"], application_type="native"),
     "claim 'redirect_uris'", "single slash"),
    ("private-use scheme for a web client", without(redirect_uris=["com.example.app:/cb"]),
     "claim 'redirect_uris'", "only a native app"),
    ("localhost is answered", without(redirect_uris=["http://localhost/cb"],
                                      application_type="native"),
     "claim 'redirect_uris'", "can resolve off the loopback interface"),
    ("redirect with a space", without(redirect_uris=["https://app.example.com/c b"]),
     "claim 'redirect_uris'", "whitespace"),
    # reserved claims and secrets
    *[(f"reserved {c}", without(**{c: "x"}), f"claim '{c}'", "set by the issuer")
      for c in ("iss", "iat", "exp", "nbf", "jti", "status")],
    *[(f"secret {c}", without(**{c: "x"}), f"claim '{c}'", "RFC 7591 section 3.2.1")
      for c in ("client_secret", "registration_access_token", "client_id")],
]


@pytest.mark.parametrize(("case", "claims", "where", "rule"), RULES, ids=[r[0] for r in RULES])
def test_rule_refuses_bad_template(tmp_path: Path, case: str, claims: dict[str, Any], where: str,
                                   rule: str) -> None:
    message = refused(tmp_path, claims)
    assert message.startswith(str(tmp_path / "templates" / "t.toml") + ": ") or \
        message.startswith("templates/t.toml: "), message
    assert where in message, message
    assert rule in message, message
    assert "\n" not in message


@pytest.mark.parametrize("uri", ["https://app.example.com/cb", "http://127.0.0.1/cb",
                                 "http://127.0.0.1:51004/oauth/cb", "http://[::1]/cb",
                                 "com.example.app:/oauth2redirect", "com.example.app:/cb?x=1"])
def test_accepted_redirects(tmp_path: Path, uri: str) -> None:
    template = put(tmp_path, "t", without(redirect_uris=[uri], application_type="native")).load("t")
    assert template.claims["redirect_uris"] == [uri]


def test_extension_claims_and_language_tags_are_carried(tmp_path: Path) -> None:
    claims = without(org_id="acme-42", software_roles=["connector", "reader"],
                     **{"client_name#ja-Jpan-JP": "テスト", "grant_types": ["authorization_code",
                        "urn:example:params:grant-type:custom"]})
    template = put(tmp_path, "t", claims).load("t")
    assert template.claims["org_id"] == "acme-42"
    assert template.claims["software_roles"] == ["connector", "reader"]
    assert template.claims["client_name#ja-Jpan-JP"] == "テスト"


@pytest.mark.parametrize(
    ("claims", "claim", "text"),
    [
        (without("jwks_uri", jwks={"keys": [{"kty": "OKP", "crv": "Ed25519",
                                              "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
         "jwks", "prefer jwks_uri"),
        (without("jwks_uri", token_endpoint_auth_method="client_secret_basic"),
         "token_endpoint_auth_method", "shared secret"),
        (without(grant_types=["authorization_code", "implicit"], response_types=["code", "token"]),
         "grant_types", "implicit grant"),
        (without(redirect_uris=["http://127.0.0.1/cb"]), "redirect_uris", "outside a native-app"),
        (without(response_types=["code", "code magic"]), "response_types",
         "extension response type"),
        (without(redirect_uri=["https://app.example.com/cb"]), "redirect_uri",
         "did you mean 'redirect_uris'"),
        (without(grant_type=["authorization_code"]), "grant_type", "did you mean 'grant_types'"),
        (without(clinet_name="x"), "clinet_name", "did you mean 'client_name'"),
        (without(**{"client_nmae#de": "x"}), "client_nmae#de", "did you mean 'client_name'"),
    ],
)
def test_risky_choices_warn_and_fail_under_strict(tmp_path: Path, cli: Cli, claims: dict[str, Any],
                                                  claim: str, text: str) -> None:
    template = put(tmp_path, "t", claims).load("t")
    assert [w.where for w in template.warnings] == [f"claim '{claim}'"]
    assert text in template.warnings[0].line()
    write_template(cli.home, "risky", template_text(claims))
    ok = cli("templates", "validate", "risky")
    assert ok.exit_code == 0 and "warning:" in ok.stdout and text in ok.stdout
    strict = cli("templates", "validate", "risky", "--strict")
    assert strict.exit_code == 1 and "FAIL  risky" in strict.stdout and text in strict.stdout


def test_a_non_loopback_http_redirect_is_not_called_loopback(tmp_path: Path) -> None:
    message = refused(tmp_path, without(redirect_uris=["http://app.example.com/cb"]))
    assert "non-loopback" in message and "is a loopback" not in message
    from issuer.core import metadata
    findings = metadata.check_claims(without(redirect_uris=["http://app.example.com/cb"]))
    assert not any("is a loopback" in f.message for f in findings)


def test_native_template_loopback_has_no_warning(tmp_path: Path) -> None:
    claims = without("jwks_uri", token_endpoint_auth_method="none", application_type="native",
                     redirect_uris=["http://127.0.0.1/cb"])
    assert put(tmp_path, "t", claims).load("t").warnings == ()


# --- structure: extends, lifetime, overridable, required ------------------------------------


def test_extends_merges_claims_child_wins(tmp_path: Path) -> None:
    s = put(tmp_path, "base", {"contacts": ["a@example.com"], "client_name": "Base",
                              "scope": "a b"}, lifetime="90d", overridable=["scope"],
            description="base")
    (s.directory / "mid.toml").write_text(template_text(
        {"client_name": "Mid", "redirect_uris": ["https://x.example/cb"]}, extends="base",
        lifetime=None, required=["software_version"]))
    (s.directory / "leaf.toml").write_text(template_text(
        {"scope": "c", "redirect_uris": ["https://y.example/cb"]}, extends="mid", lifetime="10d"))
    leaf = s.load("leaf")
    assert leaf.chain == ("leaf", "mid", "base")
    assert leaf.claims == {"contacts": ["a@example.com"], "client_name": "Mid", "scope": "c",
                           "redirect_uris": ["https://y.example/cb"]}  # list replaced, not merged
    assert leaf.lifetime == 10 * 86400
    assert leaf.description == "base"
    assert leaf.required == {"software_version"}
    assert leaf.overridable == {"scope", "software_version"}  # required implies overridable
    assert s.load("mid").lifetime == 90 * 86400  # inherited


def test_required_claim_may_be_absent_from_the_template(tmp_path: Path) -> None:
    claims = without("jwks_uri")
    template = put(tmp_path, "t", claims, required=["jwks_uri"]).load("t")
    assert "jwks_uri" in template.required


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"t": 'extends = "t"\nlifetime = "1d"\n'}, "extends cycle: t -> t"),
        ({"t": 'extends = "u"\nlifetime = "1d"\n', "u": 'extends = "t"\n'},
         "extends cycle: t -> u -> t"),
        ({"t": 'extends = "missing"\nlifetime = "1d"\n'}, "template 'missing' not found"),
        ({"t": 'extends = "../x"\nlifetime = "1d"\n'}, "is not a template name"),
        ({"t": "[claims]\nclient_name = 'x'\n"}, "key 'lifetime': is required"),
        ({"t": 'lifetime = "500d"\n'}, "exceeds max_lifetime 400d"),
        ({"t": 'lifetime = "soon"\n'}, "not a duration"),
        ({"t": 'lifetime = "1d"\n[claim]\nclient_name = "x"\n'}, "key 'claim': unknown key"),
        ({"t": 'lifetime = "1d"\noverridable = "scope"\n'}, "key 'overridable': must be an array"),
        ({"t": 'lifetime = "1d"\nrequired = ["iss"]\n'}, "'iss' is a reserved claim"),
        ({"t": 'lifetime = "1d"\noverridable = ["jti"]\n'}, "'jti' is a reserved claim"),
        ({"t": 'lifetime = "1d"\n[claims]\nsoftware_version = 1979-05-27\n'},
         "claim 'software_version': holds a TOML date"),
        ({"t": 'lifetime = "1d"\nclaims = "x"\n'}, "key 'claims': must be a table"),
        ({"t": 'lifetime = "1d"\ndescription = 5\n'}, "key 'description': must be a string"),
        ({"t": "lifetime = \n"}, "not valid TOML"),
    ],
)
def test_structure_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    s = store(tmp_path)
    for name, body in files.items():
        (s.directory / f"{name}.toml").write_text(body)
    with pytest.raises(TemplateError) as info:
        s.load("t")
    assert message in info.value.description
    assert ".toml: " in info.value.description


def test_names_are_checked_before_any_file_is_read(tmp_path: Path) -> None:
    s = store(tmp_path)
    for bad in ("../etc/passwd", "A", "", ".hidden", "a/b", "x" * 65):
        with pytest.raises(NotFound):
            s.load(bad)
    with pytest.raises(NotFound, match="no template named 'absent'"):
        s.load("absent")


def test_list_ignores_files_that_are_not_template_names(tmp_path: Path) -> None:
    s = put(tmp_path, "good", BASE_CLAIMS)
    (s.directory / "Bad Name.toml").write_text("")
    (s.directory / "notes.txt").write_text("")
    assert s.names() == ["good"]


def test_digest_tracks_resolved_content(tmp_path: Path) -> None:
    s = put(tmp_path, "t", BASE_CLAIMS)
    first = s.load("t").digest
    (s.directory / "t.toml").write_text(template_text(without(scope="more")) + "\n")
    assert s.load("t").digest != first  # the cache notices the file changed
    (s.directory / "t.toml").write_text("# comment only\n" + template_text(BASE_CLAIMS))
    assert s.load("t").digest == first  # formatting is not content


def test_validate_reports_every_problem(cli: Cli) -> None:
    write_template(cli.home, "broken", template_text(
        without(redirect_uris=["http://evil.example/cb"], client_secret="s")))
    result = cli("templates", "validate")
    assert result.exit_code == 1
    assert "FAIL  broken" in result.stdout
    assert "claim 'redirect_uris'" in result.stdout and "claim 'client_secret'" in result.stdout
    assert "ok    mcp-connector" in result.stdout
    assert result.stderr.strip() == ("issuer: error: 1 of 5 template(s) failed validation: broken")
    as_json = json.loads(cli("templates", "validate", "broken", "--json").stdout)
    assert as_json[0]["ok"] is False and len(as_json[0]["errors"]) == 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_template_text_is_accepted_or_refused_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                                          text: str) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "t.toml").write_bytes(text.encode("utf-8", "replace"))
    s = TemplateStore(directory, MAX)
    try:
        s.load("t")
    except TemplateError as exc:
        assert "\n" not in exc.description and "t.toml" in exc.description


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                        st.text(max_size=5), c, max_size=3), max_leaves=6),
                       max_size=6))
def test_any_claims_are_checked_without_crashing(claims: dict[str, Any]) -> None:
    from issuer.core import metadata

    for finding in metadata.check_claims(claims):
        assert finding.level in ("error", "warning")
        assert "\n" not in finding.message


def test_a_child_removes_an_inherited_claim(tmp_path: Path, cli: Cli) -> None:
    """remove_claims: switch from the parent's jwks_uri to an inline jwks (never both)."""
    s = put(tmp_path, "base", BASE_CLAIMS, lifetime="90d")
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}
    (s.directory / "inline.toml").write_text(template_text({"jwks": jwks}, extends="base",
                                                           lifetime=None,
                                                           remove_claims=["jwks_uri"]))
    inline = s.load("inline")
    assert "jwks_uri" not in inline.claims and inline.claims["jwks"] == jwks
    assert inline.digest != s.load("base").digest
    # without the removal, the child would carry both: refused
    (s.directory / "both.toml").write_text(template_text({"jwks": jwks}, extends="base",
                                                         lifetime=None))
    with pytest.raises(TemplateError, match="jwks"):
        s.load("both")
    # a grandchild inherits the claim as absent and may set it again
    (s.directory / "again.toml").write_text(template_text(
        {"jwks_uri": "https://other.example/jwks.json"}, extends="inline", lifetime=None,
        remove_claims=["jwks"]))
    assert s.load("again").claims["jwks_uri"] == "https://other.example/jwks.json"
    # end to end: a minted statement carries no removed claim
    write_template(cli.home, "inline-cli", template_text({"jwks": jwks}, extends="mcp-connector",
                                                         lifetime=None,
                                                         remove_claims=["jwks_uri"]))
    minted = cli("mint", "inline-cli", "--set", "software_version=1", "--json")
    assert minted.exit_code == 0, minted.stderr
    claims = json.loads(cli("verify", json.loads(minted.stdout)["software_statement"]).stdout)
    assert "jwks_uri" not in claims and claims["jwks"] == jwks


@pytest.mark.parametrize(
    ("remove", "claims", "message"),
    [
        (["jwks_url"], {}, "claim 'jwks_url' is not inherited from an extended template: "
                           "nothing to remove; did you mean 'jwks_uri'?"),
        (["jwks_uri"], {"jwks_uri": "https://x.example/j.json"},
         "claim 'jwks_uri': is both in remove_claims and in [claims]"),
        ("jwks_uri", {}, "key 'remove_claims': must be an array of claim names"),
    ],
)
def test_bad_removals_are_refused(tmp_path: Path, remove: Any, claims: dict[str, Any],
                                  message: str) -> None:
    s = put(tmp_path, "base", BASE_CLAIMS, lifetime="90d")
    (s.directory / "t.toml").write_text(template_text(claims, extends="base", lifetime=None,
                                                      remove_claims=remove))
    with pytest.raises(TemplateError) as info:
        s.load("t")
    assert message in info.value.description and "t.toml" in info.value.description


def test_a_mistyped_template_name_gets_a_suggestion(cli: Cli) -> None:
    assert_one_line_error(cli("mint", "mcp-conector", "--set", "software_version=1"), 1,
                          "no template named 'mcp-conector'", "did you mean 'mcp-connector'?")
    assert_one_line_error(cli("templates", "show", "desktop-agnet"), 1,
                          "did you mean 'desktop-agent'?")
    assert_one_line_error(cli("mint", "zzzz"), 1, "no template named 'zzzz'")
    assert "did you mean" not in cli("mint", "zzzz").stderr  # nothing near: no guess
    assert_one_line_error(cli("audit", "list", "--template", "workflow-runer"), 1,
                          "did you mean 'workflow-runner'?")
    # a real template with no statements yet is an empty list, not an error
    assert cli("audit", "list", "--template", "workflow-runner", "--json").stdout.strip() == "[]"


def test_template_changed_records_who_edited_the_file(cli: Cli) -> None:
    import os
    import pwd

    path = cli.home / "templates" / "desktop-agent.toml"
    assert cli("mint", "desktop-agent", "--set", "software_version=1").exit_code == 0
    path.write_text(path.read_text().replace('lifetime = "90d"', 'lifetime = "30d"'))
    os.utime(path, (1_790_000_000, 1_790_000_000))
    assert cli("mint", "desktop-agent", "--set", "software_version=2").exit_code == 0
    history = json.loads(cli("templates", "history", "desktop-agent", "--json").stdout)
    changed = history[-1]
    assert changed["type"] == "template.changed"
    edited = {e["template"]: e for e in changed["data"]["edited"]}
    assert edited["desktop-agent"] == {"template": "desktop-agent", "file": str(path),
                                       "owner": pwd.getpwuid(os.getuid()).pw_name,
                                       "mtime": "2026-09-21T14:13:20Z"}
    assert set(edited) == {"desktop-agent", "publisher-base"}  # every file of the chain
    text = cli("templates", "history", "desktop-agent").stdout
    assert f"{path} edited by {pwd.getpwuid(os.getuid()).pw_name} at 2026-09-21T14:13:20Z" in text
