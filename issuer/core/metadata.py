"""RFC 7591 client metadata rules: the one place they live.

Templates (at load and ``templates validate``), minting (on the final claims) and verification
(on a statement's payload) all call :func:`check_claims`; nothing else re-implements a rule.

Each claim of the registry has one ``validate_<claim>`` function; rules that relate several
claims follow them. Every finding names the claim, the rule (with its RFC section) and whether
it is an error or a warning (a legal but risky choice, an error only under ``--strict``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One broken (or risky) rule."""

    level: Level
    claim: str
    message: str
    rule: str
    #: RFC 7591 section 3.2.2 error code this finding maps to.
    code: str = "invalid_client_metadata"

    def line(self, source: str) -> str:
        """``<source>: claim 'x': <message> (<rule>)``, the one-line form every front prints."""
        return f"{source}: claim '{self.claim}': {self.message} ({self.rule})"


@dataclass(frozen=True)
class Context:
    """What the checks may assume about where the claims come from."""

    #: Claims a template requires at mint time: absent now, present in every statement.
    pending: frozenset[str] = frozenset()
    #: True when checking a signed statement's payload, where JWT claims are expected.
    statement: bool = False
    findings: list[Finding] = field(default_factory=list)

    def error(self, claim: str, message: str, rule: str, code: str = "invalid_client_metadata") -> None:
        self.findings.append(Finding("error", claim, message, rule, code))

    def warn(self, claim: str, message: str, rule: str) -> None:
        self.findings.append(Finding("warning", claim, message, rule))


# --- registries ---------------------------------------------------------------------------

#: IANA "OAuth Token Endpoint Authentication Methods" registry (RFC 7591 section 4.2,
#: RFC 7523, RFC 8705 section 2).
TOKEN_ENDPOINT_AUTH_METHODS = frozenset(
    {
        "none",
        "client_secret_post",
        "client_secret_basic",
        "client_secret_jwt",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
    }
)

#: Methods that authenticate with a secret the authorization server issues (RFC 7591 section
#: 3.2.1: ``client_secret`` is returned only to clients that use one).
SECRET_AUTH_METHODS = frozenset({"client_secret_post", "client_secret_basic",
                                 "client_secret_jwt"})


def needs_client_secret(claims: Mapping[str, Any]) -> bool:
    """Whether a client registered with ``claims`` is issued a ``client_secret``; the method
    defaults to ``client_secret_basic`` when omitted (RFC 7591 section 2)."""
    return claims.get("token_endpoint_auth_method", "client_secret_basic") in SECRET_AUTH_METHODS


#: Grant types defined by RFC 7591 section 2 and later registrations; extension grant types
#: are absolute URIs (RFC 6749 section 4.5).
GRANT_TYPES = frozenset(
    {
        "authorization_code",
        "implicit",
        "password",
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:saml2-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:openid:params:grant-type:ciba",
    }
)

#: Response type components (RFC 6749 section 3.1.1, OAuth 2.0 Multiple Response Types).
RESPONSE_TYPE_PARTS = frozenset({"code", "token", "id_token"})

#: Claims a template or mint request may never set: JWT claims the issuer sets itself
#: (RFC 7519 section 4.1; docs/templates.md) ...
ISSUER_SET_CLAIMS = frozenset({"iss", "iat", "exp", "nbf", "jti", "status", "provenance"})
#: ... and values an authorization server issues at registration (RFC 7591 section 3.2.1),
#: which a statement baked into distributed software must never carry.
SERVER_ISSUED_CLAIMS = frozenset(
    {
        "client_id",
        "client_secret",
        "client_id_issued_at",
        "client_secret_expires_at",
        "registration_access_token",
        "registration_client_uri",
        "software_statement",
    }
)
RESERVED_CLAIMS = ISSUER_SET_CLAIMS | SERVER_ISSUED_CLAIMS

#: Human-readable fields that may carry a language tag, ``client_name#ja`` (RFC 7591 section 2.2).
HUMAN_READABLE = frozenset({"client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri"})

_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*\Z")  # BCP 47 (RFC 5646) shape
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*\Z")  # RFC 3986 section 3.1
_PRIVATE_USE_SCHEME = re.compile(r"^[a-z][a-z0-9+-]*(\.[a-z0-9][a-z0-9+-]*)+\Z")  # RFC 8252 s7.1
_RESPONSE_TYPE_NAME = re.compile(r"^[A-Za-z0-9_]+\Z")  # response-name, RFC 6749 section 8.4
_NQCHAR_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+\Z")  # RFC 6749 section 3.3
#: Schemes a browser executes or reads locally (RFC 9700 section 4.1: open redirectors, XSS).
_SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "about"})
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

S2 = "RFC 7591 section 2"


def base_claim(name: str) -> str:
    """``client_name#ja-Jpan-JP`` -> ``client_name`` (RFC 7591 section 2.2)."""
    return name.split("#", 1)[0]


# --- shared value checks -----------------------------------------------------------------


def _is_str(ctx: Context, claim: str, value: Any) -> bool:
    if isinstance(value, str) and value:
        return True
    ctx.error(claim, f"must be a non-empty string, got {_describe(value)}", S2)
    return False


def _is_str_list(ctx: Context, claim: str, value: Any) -> bool:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return True
    ctx.error(claim, f"must be an array of non-empty strings, got {_describe(value)}", S2)
    return False


def _describe(value: Any) -> str:
    kinds = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
             list: "an array", dict: "an object", type(None): "null"}
    kind = kinds.get(type(value), type(value).__name__)
    return f"{kind} ({_short(value)})" if not isinstance(value, (list, dict)) else kind


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def _has_bad_chars(uri: str) -> bool:
    return _BAD_CHARS.search(uri) is not None


def _web_url(ctx: Context, claim: str, value: Any, *, https_only: bool, rule: str = S2) -> None:
    """An absolute http(s) URL of a web resource."""
    if not _is_str(ctx, claim, value):
        return
    problem, why = _web_url_problem(value, https_only)
    if problem:
        ctx.error(claim, f"{_short(value)} {problem}", why or rule)


@functools.lru_cache(maxsize=4096)
def _web_url_problem(value: str, https_only: bool) -> tuple[str | None, str | None]:
    """What is wrong with a web URL, if anything (pure: statements of one template repeat
    their URLs, so the answer is remembered)."""
    return _web_url_rules(value, https_only)


def _web_url_rules(value: str, https_only: bool) -> tuple[str | None, str | None]:
    # Undecorated so that `make mutants` mutates it (mutmut skips decorated functions).
    parts = urlsplit(value)
    if _has_bad_chars(value) or not _SCHEME.match(parts.scheme or "-"):
        return "is not an absolute URI", None
    if parts.scheme.lower() not in (("https",) if https_only else ("https", "http")):
        return f"must use {'https' if https_only else 'http or https'}", None
    if not parts.hostname:
        return "has no host", None
    if parts.username is not None:
        return "must not carry userinfo", "RFC 3986 section 3.2.1"
    return None, None


# --- one validator per registered claim ----------------------------------------------------


def validate_redirect_uris(ctx: Context, claim: str, value: Any) -> None:
    """Redirect URIs: absolute, exact (no wildcard, no fragment, no userinfo); https, http on a
    loopback IP, or a private-use reverse-domain scheme (RFC 8252 sections 7.1, 7.3, 8.3)."""
    if not _is_str_list(ctx, claim, value):
        return
    for uri in value:
        problem, rule = _redirect_uri_problem(uri)
        if problem:
            ctx.error(claim, f"{_short(uri)} {problem}", rule, code="invalid_redirect_uri")


@functools.lru_cache(maxsize=4096)
def _redirect_uri_problem(uri: str) -> tuple[str | None, str]:
    return _redirect_uri_rules(uri)


def _redirect_uri_rules(uri: str) -> tuple[str | None, str]:
    # Undecorated so that `make mutants` mutates it (mutmut skips decorated functions).
    if _has_bad_chars(uri):
        return "contains whitespace or control characters", "RFC 3986 section 3"
    if "*" in uri:
        return "contains a wildcard; redirect URIs are matched exactly", "RFC 9700 section 2.1"
    parts = urlsplit(uri)
    # urlsplit returns a scheme only when it is one (RFC 3986 section 3.1: a letter, then
    # letters, digits, "+", "-", "."), and sees userinfo exactly when the authority has an "@".
    if not parts.scheme:
        return "is not an absolute URI", "RFC 6749 section 3.1.2"
    if "#" in uri:
        return "must not have a fragment", "RFC 6749 section 3.1.2"
    if "@" in parts.netloc:
        return "must not carry userinfo", "RFC 9700 section 4.1.1"
    scheme = parts.scheme.lower()
    if scheme in _SCRIPT_SCHEMES:
        return (f"uses the '{scheme}' scheme, which a browser runs or reads locally instead of "
                "navigating: never a redirect URI", "RFC 9700 section 4.1, RFC 6749 section 10.6")
    if scheme == "https":
        return (None, "") if parts.hostname else ("has no host", "RFC 6749 section 3.1.2")
    if scheme == "http":
        host = parts.hostname or ""
        if host.lower() == "localhost":
            # Accepted: 127.0.0.1 and [::1]. Refused: "localhost", which can resolve off the
            # loopback interface and trips client firewalls (RFC 8252 section 8.3 prefers IP
            # literals), and which loopback port matching (section 7.3) does not apply to.
            return ("uses 'localhost', which can resolve off the loopback interface; use the "
                    "loopback IP literal 127.0.0.1 or [::1]", "RFC 8252 section 8.3")
        if is_loopback_ip(host):
            return None, ""
        return "uses http on a non-loopback host; use https", "RFC 8252 section 8.3"
    if _PRIVATE_USE_SCHEME.match(scheme):
        if parts.netloc or uri[len(scheme) + 1:].startswith("//"):
            return ("names an authority after a private-use scheme; use a single slash "
                    f"({scheme}:/path)", "RFC 8252 section 7.1")
        return None, ""
    return ("uses a scheme that is neither https, http on a loopback address, nor a private-use "
            "reverse-domain scheme like com.example.app", "RFC 8252 section 7.1")


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_token_endpoint_auth_method(ctx: Context, claim: str, value: Any) -> None:
    """A value of the IANA token endpoint authentication methods registry (RFC 7591 s4.2)."""
    if _is_str(ctx, claim, value) and value not in TOKEN_ENDPOINT_AUTH_METHODS:
        known = ", ".join(sorted(TOKEN_ENDPOINT_AUTH_METHODS))
        ctx.error(claim, f"{_short(value)} is not a registered method (one of {known})",
                  "RFC 7591 section 2, IANA OAuth Token Endpoint Authentication Methods")


def validate_grant_types(ctx: Context, claim: str, value: Any) -> None:
    """Registered grant types, or absolute URIs for extension grants (RFC 6749 section 4.5)."""
    if not _is_str_list(ctx, claim, value):
        return
    for grant in value:
        if grant == "password":
            ctx.error(claim, "the resource owner password credentials grant must not be used: it "
                      "exposes the user's credentials to the client", "RFC 9700 section 2.4")
        elif grant not in GRANT_TYPES and not _is_absolute_uri(grant):
            ctx.error(claim, f"{_short(grant)} is not a known grant type (extension grant types "
                      "are absolute URIs)", "RFC 7591 section 2, RFC 6749 section 4.5")


def _is_absolute_uri(value: str) -> bool:
    scheme = urlsplit(value).scheme
    return bool(scheme) and bool(_SCHEME.match(scheme)) and ":" in value and not _has_bad_chars(value)


def validate_response_types(ctx: Context, claim: str, value: Any) -> None:
    """``code``, ``token``, ``id_token`` combinations, or ``none`` (RFC 6749 section 3.1.1)."""
    if not _is_str_list(ctx, claim, value):
        return
    for rtype in value:
        parts = rtype.split(" ")
        if rtype == "none" or (all(p in RESPONSE_TYPE_PARTS for p in parts)
                               and len(set(parts)) == len(parts)):
            continue
        if all(_RESPONSE_TYPE_NAME.match(p) for p in parts) and len(set(parts)) == len(parts):
            # An extension response type (RFC 6749 section 8.4) is legal: an authorization
            # server that does not support it refuses it itself (its response_types_supported).
            ctx.warn(claim, f"{_short(rtype)} is an extension response type; authorization "
                     "servers that don't support it will refuse the client", "RFC 6749 section 8.4")
        else:
            ctx.error(claim, f"{_short(rtype)} is not a response type (space-separated names "
                      "such as code, token, id_token, or none)",
                      "RFC 7591 section 2, RFC 6749 section 3.1.1")


def validate_scope(ctx: Context, claim: str, value: Any) -> None:
    """Space-separated scope tokens of NQCHAR (RFC 6749 section 3.3)."""
    if not _is_str(ctx, claim, value):
        return
    if not all(_NQCHAR_TOKEN.match(token) for token in value.split(" ")):
        ctx.error(claim, f"{_short(value)} is not a list of scope tokens separated by single "
                  "spaces", "RFC 7591 section 2, RFC 6749 section 3.3")


def validate_contacts(ctx: Context, claim: str, value: Any) -> None:
    """An array of strings (RFC 7591 section 2)."""
    _is_str_list(ctx, claim, value)


def validate_human_string(ctx: Context, claim: str, value: Any) -> None:
    """client_name and other plain strings (RFC 7591 section 2)."""
    _is_str(ctx, claim, value)


def validate_web_page_uri(ctx: Context, claim: str, value: Any) -> None:
    """client_uri, logo_uri, tos_uri, policy_uri: a web page or image (RFC 7591 section 2)."""
    _web_url(ctx, claim, value, https_only=False)


def validate_jwks_uri(ctx: Context, claim: str, value: Any) -> None:
    """jwks_uri: an https URL; keys fetched over plain http could be swapped in transit."""
    _web_url(ctx, claim, value, https_only=True, rule="RFC 7591 section 2, RFC 7517 section 9.3")


def validate_jwks(ctx: Context, claim: str, value: Any) -> None:
    """jwks: a JWK Set (RFC 7517 section 5) of public keys only."""
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not keys:
        ctx.error(claim, "must be a JWK Set object with a non-empty 'keys' array",
                  "RFC 7591 section 2, RFC 7517 section 5")
        return
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            ctx.error(claim, f"key {i} is not a JWK with a 'kty'", "RFC 7517 section 4.1")
        elif key["kty"] == "oct":
            ctx.error(claim, f"key {i} is a symmetric key, a shared secret", "RFC 7591 section 2")
        elif _PRIVATE_JWK_MEMBERS & key.keys():
            members = ", ".join(sorted(_PRIVATE_JWK_MEMBERS & key.keys()))
            ctx.error(claim, f"key {i} holds private key members ({members}); jwks must hold "
                      "public keys only", "RFC 7591 section 2, RFC 7518 section 6")


def validate_application_type(ctx: Context, claim: str, value: Any) -> None:
    """``web`` or ``native`` (OpenID Connect Dynamic Client Registration 1.0 section 2)."""
    if _is_str(ctx, claim, value) and value not in ("web", "native"):
        ctx.error(claim, f"{_short(value)} is neither 'web' nor 'native'",
                  "OpenID Connect Registration 1.0 section 2")


def validate_bool(ctx: Context, claim: str, value: Any) -> None:
    """Registered boolean metadata (RFC 8705 section 3.4, RFC 9449 section 5.2, RFC 9126 s6)."""
    if not isinstance(value, bool):
        ctx.error(claim, f"must be a boolean, got {_describe(value)}", S2)


def validate_signing_alg(ctx: Context, claim: str, value: Any) -> None:
    """A JWS algorithm name other than ``none`` (RFC 7515 section 4.1.1)."""
    if _is_str(ctx, claim, value) and value == "none":
        ctx.error(claim, "'none' is not a signing algorithm", "RFC 7518 section 3.6")


def validate_positive_number(ctx: Context, claim: str, value: Any) -> None:
    """default_max_age and other counts of seconds."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        ctx.error(claim, f"must be a non-negative integer, got {_describe(value)}", S2)


def validate_audience(ctx: Context, claim: str, value: Any) -> None:
    """``aud``: a StringOrURI or an array of them (RFC 7519 section 4.1.3). A template may set
    it to restrict its statements to the authorization servers it names; a verifier then
    accepts them only when configured with one of those audiences."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, str) and v and (":" not in v or _is_absolute_uri(v))
                    for v in values):
        ctx.error(claim, f"must be a non-empty string or array of strings (a URI when it "
                  f"contains ':'), got {_describe(value)}", "RFC 7519 section 4.1.3")


Validator = Callable[[Context, str, Any], None]

#: The client metadata registry this issuer knows: RFC 7591 section 2, plus the IANA
#: "OAuth Dynamic Client Registration Metadata" entries agent clients commonly use.
REGISTRY: dict[str, Validator] = {
    "redirect_uris": validate_redirect_uris,
    "token_endpoint_auth_method": validate_token_endpoint_auth_method,
    "grant_types": validate_grant_types,
    "response_types": validate_response_types,
    "client_name": validate_human_string,
    "client_uri": validate_web_page_uri,
    "logo_uri": validate_web_page_uri,
    "scope": validate_scope,
    "contacts": validate_contacts,
    "tos_uri": validate_web_page_uri,
    "policy_uri": validate_web_page_uri,
    "jwks_uri": validate_jwks_uri,
    "jwks": validate_jwks,
    "software_id": validate_human_string,
    "software_version": validate_human_string,
    # OpenID Connect Dynamic Client Registration 1.0 section 2
    "application_type": validate_application_type,
    "post_logout_redirect_uris": validate_redirect_uris,
    "token_endpoint_auth_signing_alg": validate_signing_alg,
    "default_max_age": validate_positive_number,
    "require_auth_time": validate_bool,
    # RFC 8705 section 2.1.2 and 3.4, RFC 9449 section 5.2, RFC 9126 section 6
    "tls_client_auth_subject_dn": validate_human_string,
    "tls_client_auth_san_dns": validate_human_string,
    "tls_client_auth_san_uri": validate_human_string,
    "tls_client_auth_san_ip": validate_human_string,
    "tls_client_auth_san_email": validate_human_string,
    "tls_client_certificate_bound_access_tokens": validate_bool,
    "dpop_bound_access_tokens": validate_bool,
    "require_pushed_authorization_requests": validate_bool,
    # Not client metadata: the one JWT claim a template may set (RFC 7519 section 4.1.3)
    "aud": validate_audience,
}

#: Claims the registry defines as JSON arrays (a mint-time scalar there is an error).
ARRAY_CLAIMS = frozenset(
    {"redirect_uris", "grant_types", "response_types", "contacts", "post_logout_redirect_uris"}
)


def is_array_claim(name: str) -> bool:
    """Whether the registry defines ``name`` as an array of strings."""
    return name in ARRAY_CLAIMS


# --- rules across claims ----------------------------------------------------------------


def reserved_finding(name: str, *, statement: bool) -> Finding | None:
    """Why ``name`` can't be set by a template or at mint time, if it can't."""
    if name in SERVER_ISSUED_CLAIMS:
        return Finding("error", name, "is issued by the authorization server at registration "
                       "and must never appear in a software statement", "RFC 7591 section 3.2.1")
    if name in ISSUER_SET_CLAIMS and not statement:
        return Finding("error", name, "is set by the issuer when it signs and can't be given by "
                       "a template or at mint time", "RFC 7519 section 4.1, RFC 7591 section 2.3")
    return None


def check_reserved(ctx: Context, claims: Mapping[str, Any]) -> None:
    """Claims the issuer or the authorization server sets can't come from a template."""
    for name in claims:
        finding = reserved_finding(name, statement=ctx.statement)
        if finding is not None:
            ctx.findings.append(finding)


def check_language_tags(ctx: Context, claims: Mapping[str, Any]) -> None:
    """``claim#tag`` only on human-readable fields, with a BCP 47 tag (RFC 7591 section 2.2)."""
    for name in claims:
        if "#" not in name:
            continue
        base, tag = name.split("#", 1)
        if base in REGISTRY and base not in HUMAN_READABLE:
            ctx.error(name, f"language tags are only allowed on human-readable fields "
                      f"({', '.join(sorted(HUMAN_READABLE))})", "RFC 7591 section 2.2")
        elif not _LANGUAGE_TAG.match(tag):
            ctx.error(name, f"{tag!r} is not a BCP 47 language tag", "RFC 7591 section 2.2")


def _effective(claims: Mapping[str, Any], name: str, default: list[str]) -> list[str] | None:
    """The value an authorization server would use, defaults applied (RFC 7591 section 2)."""
    value = claims.get(name, default)
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def check_grant_response_consistency(ctx: Context, claims: Mapping[str, Any]) -> None:
    """authorization_code <-> code, implicit <-> token / id_token (RFC 7591 section 2.1)."""
    if ctx.pending & {"grant_types", "response_types"}:
        return
    grants = _effective(claims, "grant_types", ["authorization_code"])
    responses = _effective(claims, "response_types", ["code"])
    if grants is None or responses is None:
        return  # the type error is already reported
    rule = "RFC 7591 section 2.1"
    defaulted = "" if "response_types" in claims else " (response_types defaults to [\"code\"] " \
        "when omitted; set response_types = [] for a client without redirect flows)"
    parts = [set(r.split(" ")) for r in responses]
    if any("code" in p for p in parts) and "authorization_code" not in grants:
        ctx.error("grant_types", "a 'code' response type needs the 'authorization_code' grant type"
                  + defaulted, rule)
    if any(p & {"token", "id_token"} for p in parts) and "implicit" not in grants:
        ctx.error("grant_types", "a 'token' or 'id_token' response type needs the 'implicit' "
                  "grant type", rule)
    if "authorization_code" in grants and not any("code" in p for p in parts):
        ctx.error("response_types", "the 'authorization_code' grant type needs the 'code' "
                  "response type", rule)
    if "implicit" in grants and not any(p & {"token", "id_token"} for p in parts):
        ctx.error("response_types", "the 'implicit' grant type needs a 'token' response type", rule)


def check_redirect_flows(ctx: Context, claims: Mapping[str, Any]) -> None:
    """Redirect-based grants need redirect URIs (RFC 6749 section 3.1.2.2, RFC 9700 section
    2.1: registered exactly), and private-use schemes are for native apps only (RFC 8252
    section 7.1; OpenID Connect Registration 1.0 section 2, application_type)."""
    # Only grant types named explicitly: a claim set without grant_types (a base template
    # that others extend) is not yet a client of any kind.
    grants = _effective(claims, "grant_types", [])
    if grants is None or "grant_types" in ctx.pending:
        return
    redirects = claims.get("redirect_uris")
    for grant in ("authorization_code", "implicit"):
        if grant in grants and "redirect_uris" not in claims and \
                "redirect_uris" not in ctx.pending:
            ctx.error("redirect_uris", f"the '{grant}' grant type needs registered redirect_uris",
                      "RFC 6749 section 3.1.2.2, RFC 9700 section 2.1",
                      code="invalid_redirect_uri")
    if claims.get("application_type", "web") == "web" and isinstance(redirects, list):
        for uri in redirects:
            scheme = urlsplit(uri).scheme.lower() if isinstance(uri, str) else ""
            if _PRIVATE_USE_SCHEME.match(scheme):
                ctx.error("redirect_uris", f"{_short(uri)} is a private-use scheme, which only a "
                          "native app can receive (set application_type = \"native\")",
                          "RFC 8252 section 7.1, OpenID Connect Registration 1.0 section 2",
                          code="invalid_redirect_uri")


def _one_edit_apart(a: str, b: str) -> bool:
    """One insertion, deletion, substitution or adjacent transposition turns ``a`` into ``b``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def check_near_misses(ctx: Context, claims: Mapping[str, Any]) -> None:
    """A claim name one typo away from a registered one (``redirect_uri``) is almost surely a
    mistake that would silently leave the real claim unset: a warning, an error under
    ``--strict``."""
    known = set(REGISTRY) | RESERVED_CLAIMS
    for name in claims:
        if not isinstance(name, str):
            continue
        base = base_claim(name)
        if base in known:
            continue
        close = sorted(k for k in REGISTRY if _one_edit_apart(base, k))
        if close:
            ctx.warn(name, f"is not a registered claim; did you mean '{close[0]}'?",
                     "RFC 7591 section 2")


def check_client_authentication(ctx: Context, claims: Mapping[str, Any]) -> None:
    """Key material for key-based methods; jwks xor jwks_uri; confidential client grants."""
    method = claims.get("token_endpoint_auth_method")
    has_keys = "jwks" in claims or "jwks_uri" in claims or bool(ctx.pending & {"jwks", "jwks_uri"})
    if "jwks" in claims and "jwks_uri" in claims:
        ctx.error("jwks", "jwks and jwks_uri must not both be present", S2)
    if method in ("private_key_jwt", "self_signed_tls_client_auth") and not has_keys:
        ctx.error("token_endpoint_auth_method", f"{method} needs jwks_uri (or jwks) so the "
                  "authorization server can verify the client's key",
                  "RFC 7591 section 2, RFC 7523 section 2.2, RFC 8705 section 2.2")
    if method == "tls_client_auth":
        names = [n for n in REGISTRY if n.startswith("tls_client_auth_s")]
        given = [n for n in names if n in claims or n in ctx.pending]
        if len(given) != 1:
            ctx.error("token_endpoint_auth_method", "tls_client_auth needs exactly one of "
                      + ", ".join(names), "RFC 8705 section 2.1.2")
    grants = claims.get("grant_types")
    if method == "none" and isinstance(grants, list) and "client_credentials" in grants:
        ctx.error("grant_types", "client_credentials needs an authenticated (confidential) "
                  "client, but token_endpoint_auth_method is 'none'", "RFC 6749 section 4.4")


def check_risky_choices(ctx: Context, claims: Mapping[str, Any]) -> None:
    """Legal but risky: warnings, errors under ``--strict``."""
    if "jwks" in claims:
        ctx.warn("jwks", "keys by value can't be rotated without a new statement; prefer jwks_uri",
                 S2)
    method = claims.get("token_endpoint_auth_method")
    if isinstance(method, str) and method.startswith("client_secret_"):
        ctx.warn("token_endpoint_auth_method", f"{method} relies on a shared secret, which "
                 "distributed software can't keep; prefer private_key_jwt",
                 "RFC 7591 section 2, RFC 9700 section 2.5")
    grants = claims.get("grant_types")
    if isinstance(grants, list) and "implicit" in grants:
        ctx.warn("grant_types", "the implicit grant exposes access tokens in the front channel",
                 "RFC 9700 section 2.1.2")
    redirects = claims.get("redirect_uris")
    if claims.get("application_type") != "native" and isinstance(redirects, list):
        for uri in redirects:
            parts = urlsplit(uri) if isinstance(uri, str) else None
            if parts is not None and parts.scheme.lower() == "http" and \
                    is_loopback_ip(parts.hostname or ""):
                ctx.warn("redirect_uris", f"{_short(uri)} is a loopback http redirect outside a "
                         "native-app template (set application_type = \"native\")",
                         "RFC 8252 section 7.3")
    check_near_misses(ctx, claims)


#: Every claim a rule across claims reads. Mint-time values outside this set can't change the
#: outcome of those rules for a template that already passed them.
CROSS_RULE_CLAIMS = frozenset({
    "grant_types", "response_types", "token_endpoint_auth_method", "jwks", "jwks_uri",
    "application_type", "redirect_uris", "tls_client_auth_subject_dn", "tls_client_auth_san_dns",
    "tls_client_auth_san_uri", "tls_client_auth_san_ip", "tls_client_auth_san_email",
})


def check_claims(
    claims: Mapping[str, Any],
    *,
    pending: Iterable[str] = (),
    statement: bool = False,
    changed: Iterable[str] | None = None,
) -> list[Finding]:
    """Every RFC 7591 rule on one set of claims; returns errors and warnings in claim order.

    ``pending`` names claims that are absent now but will be supplied at mint time (a
    template's ``required``); ``statement`` checks a signed payload, where the JWT claims the
    issuer sets are expected rather than forbidden.

    ``changed`` is for claims that already passed every rule except for these names (a
    template's claims plus mint-time values): the per-claim rules run on the changed claims
    only, and the rules across claims run when a changed claim is one they read. A template's
    pending claims are always among the changed ones (they are required at mint time), so
    nothing the template check skipped is skipped again.
    """
    ctx = Context(pending=frozenset(pending), statement=statement)
    only = None if changed is None else set(changed)
    subset = claims if only is None else {k: claims[k] for k in claims if k in only}
    for name, value in subset.items():
        if not isinstance(name, str) or not name:
            ctx.error(str(name), "claim names must be non-empty strings", "RFC 7519 section 4")
            continue
        validator = REGISTRY.get(base_claim(name))
        if validator is not None:
            validator(ctx, name, value)
    if any(not isinstance(name, str) for name in claims):
        # Only from a Python caller (JSON and TOML names are strings): the rules below read
        # names as text, so the finding above is the answer.
        return ctx.findings
    check_reserved(ctx, subset)
    check_language_tags(ctx, subset)
    if only is None or only & CROSS_RULE_CLAIMS:
        check_grant_response_consistency(ctx, claims)
        check_redirect_flows(ctx, claims)
        check_client_authentication(ctx, claims)
        if not statement:
            check_risky_choices(ctx, claims)
    return ctx.findings


def errors(findings: Iterable[Finding], *, strict: bool = False) -> list[Finding]:
    """The findings that reject: errors, plus warnings under ``strict``."""
    return [f for f in findings if f.level == "error" or strict]


# --- Client ID Metadata Documents ----------------------------------------------------------
# draft-ietf-oauth-client-id-metadata-document ("CIMD"). Section numbers are those of revision
# -01; the section titles, given beside them, are stable across revisions.

CIMD = "draft-ietf-oauth-client-id-metadata-document"
#: "The recommended maximum response size for client metadata documents is 5 kilobytes"
#: (CIMD section 6.6, Maximum Response Size for Client Metadata Documents).
CIMD_MAX_BYTES = 5 * 1024
#: Methods built on a secret shared with the authorization server, which a document published
#: for every authorization server to read can't establish (CIMD section 4.1, Client Metadata
#: Document; RFC 7591 section 2).
SHARED_SECRET_METHODS = frozenset({"client_secret_post", "client_secret_basic",
                                   "client_secret_jwt"})
#: Properties a document must never carry (CIMD section 4.1).
CIMD_FORBIDDEN = ("client_secret", "client_secret_expires_at")
#: Properties of the document that are not RFC 7591 client metadata of the client itself.
CIMD_OWN = frozenset({"client_id", "software_statement"})


def client_id_url_problem(url: Any) -> str | None:
    """What makes ``url`` unusable as a client identifier URL, if anything (CIMD section 3,
    Client Identifier): https, a path, no dot segments, no fragment, no userinfo."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    if _has_bad_chars(url):
        return "contains whitespace or control characters"
    parts = urlsplit(url)
    if parts.scheme != "https":
        return "must use the https scheme"
    if not parts.hostname:
        return "has no host"
    if "@" in parts.netloc:  # userinfo, with or without a password (RFC 3986 section 3.2.1)
        return "must not contain a username or password"
    if "#" in url:
        return "must not contain a fragment"
    if not parts.path or parts.path == "/":
        return "must contain a path component"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return "must not contain single-dot or double-dot path segments"
    return None


def check_document(document: Any, url: str) -> list[Finding]:
    """Every rule a Client ID Metadata Document fetched from ``url`` must follow: its own
    (CIMD section 4.1) and the RFC 7591 section 2 rules of the client metadata it carries."""
    ctx = Context()
    rule = f"{CIMD} section 4.1"
    if not isinstance(document, dict):
        ctx.error("client_id", "the document must be a JSON object", f"{rule}, RFC 8259")
        return ctx.findings
    if document.get("client_id") != url:
        # Simple string comparison (RFC 3986 section 6.2.1): no normalisation at all.
        ctx.error("client_id", f"{_short(document.get('client_id'))} is not the document's URL "
                  f"{_short(url)}", f"{rule}, RFC 3986 section 6.2.1")
    method = document.get("token_endpoint_auth_method")
    if method in SHARED_SECRET_METHODS:
        ctx.error("token_endpoint_auth_method", f"{method} relies on a shared secret, which a "
                  "published document can't establish; use private_key_jwt or none", rule)
    for name in CIMD_FORBIDDEN:
        if name in document:
            ctx.error(name, "must not appear in a client metadata document", rule)
    statement = document.get("software_statement")
    if "software_statement" in document and not (isinstance(statement, str) and statement):
        ctx.error("software_statement", "must be a compact JWS string", "RFC 7591 section 2.3")
    client = {k: v for k, v in document.items() if k not in CIMD_OWN and k not in CIMD_FORBIDDEN}
    reported = {f.claim for f in ctx.findings}
    ctx.findings.extend(f for f in check_claims(client) if f.claim not in reported)
    return ctx.findings
