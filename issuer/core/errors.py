"""The one error tree of the issuer.

Every failure the issuer reports is an :class:`IssuerError` carrying an OAuth-style ``error``
code (RFC 6749 section 5.2 style; RFC 7591 section 3.2.2 for registration metadata) and a
one-line ``description`` naming what was wrong. The CLI prints the description and exits with
``exit_code``; the HTTP service answers ``status`` with ``{"error", "error_description"}``.
"""

from __future__ import annotations


class IssuerError(Exception):
    """Base of every error the issuer reports to a user."""

    error = "server_error"
    status = 500
    exit_code = 1
    #: The description names the issuer's own files or a library's message: the operator sees
    #: it (stderr, the server log); an HTTP caller is told only the kind of failure.
    internal = True

    def __init__(self, description: str) -> None:
        super().__init__(description)
        # One line, always: descriptions end up in logs, stderr and JSON bodies.
        self.description = " ".join(str(description).split())

    def __str__(self) -> str:
        return self.description

    @property
    def public(self) -> bool:
        """Whether an HTTP caller may read the description: every refusal of its own request
        (4xx), and the 5xx errors written for callers."""
        return self.status < 500 or not self.internal

    def as_json(self) -> dict[str, str]:
        """The JSON error object of the HTTP API (docs/http-api.md)."""
        return {"error": self.error, "error_description": self.description}


class ConfigError(IssuerError):
    """issuer.toml is missing, malformed, or holds an unknown key or a bad value."""

    error = "invalid_configuration"
    exit_code = 2


class UsageError(IssuerError):
    """The request or command line is malformed."""

    error = "invalid_request"
    status = 400
    exit_code = 2


class InvalidRequest(IssuerError):
    """A well-formed request that asks for something the issuer refuses (bad claim value...)."""

    error = "invalid_request"
    status = 400


class InvalidClientMetadata(IssuerError):
    """Client metadata breaks a rule of RFC 7591 section 2 (RFC 7591 section 3.2.2)."""

    error = "invalid_client_metadata"
    status = 400


class InvalidRedirectURI(InvalidClientMetadata):
    """A redirect URI breaks RFC 7591 section 2 / RFC 8252 (RFC 7591 section 3.2.2)."""

    error = "invalid_redirect_uri"


class TemplateError(IssuerError):
    """A template file on the issuer is malformed or breaks a rule.

    Served as 409: the request was fine, the issuer's own template is not.
    """

    error = "invalid_template"
    status = 409


class NotFound(IssuerError):
    """The template, statement, key or token asked for does not exist."""

    error = "not_found"
    status = 404


class Conflict(IssuerError):
    """The request conflicts with the issuer's state (already exists, already revoked...)."""

    error = "conflict"
    status = 409


class KeystoreError(IssuerError):
    """The keystore cannot be used: unsafe permissions, missing passphrase, no active key."""

    error = "keystore_error"
    status = 503


class AuditUnavailable(IssuerError):
    """The audit store could not record: nothing was issued."""

    error = "temporarily_unavailable"
    status = 503
    internal = False


class DatabaseFailure(AuditUnavailable):
    """The database itself failed (its path and SQLite's message are in the description)."""

    internal = True


class UnusableDatabase(IssuerError):
    """The configured database is missing, empty, damaged or not this issuer's: the issuer
    refuses to run rather than start a new record beside the lost one."""

    error = "temporarily_unavailable"
    status = 503


class InvalidSoftwareStatement(IssuerError):
    """A statement failed verification (RFC 7591 section 3.2.2)."""

    error = "invalid_software_statement"
    status = 400


class UnapprovedSoftwareStatement(InvalidSoftwareStatement):
    """A valid-looking statement from an issuer that is not trusted (RFC 7591 section 3.2.2)."""

    error = "unapproved_software_statement"


class InvalidToken(IssuerError):
    """Missing, malformed, unknown or revoked API token (RFC 6750 section 3.1)."""

    error = "invalid_token"
    status = 401


class MissingToken(InvalidToken):
    """No credentials at all: RFC 6750 section 3.1 says to send no error code in the challenge."""


class InsufficientScope(IssuerError):
    """The API token's role or templates do not allow this (RFC 6750 section 3.1)."""

    error = "insufficient_scope"
    status = 403


class RequestTooLarge(IssuerError):
    """The request body is over the limit."""

    error = "request_too_large"
    status = 413


class RateLimited(IssuerError):
    """The API token has used up its rate limit."""

    error = "rate_limited"
    status = 429

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class InvalidGrant(IssuerError):
    """A CI token offered for exchange is not acceptable (RFC 8693 section 2.2.2, RFC 6749
    section 5.2): bad signature, audience, time, replayed, or no publisher matches it."""

    error = "invalid_grant"
    status = 400


class InvalidScope(IssuerError):
    """An exchange asked for templates outside its publisher's set (RFC 6749 section 5.2)."""

    error = "invalid_scope"
    status = 400


class InvalidTarget(IssuerError):
    """An exchange named a ``resource`` or ``audience`` this issuer is not (RFC 8693 s2.2.2)."""

    error = "invalid_target"
    status = 400


class UnsupportedGrantType(IssuerError):
    """The token endpoint was asked for a grant it does not do (RFC 6749 section 5.2)."""

    error = "unsupported_grant_type"
    status = 400


class UpstreamUnavailable(IssuerError):
    """A CI issuer's discovery document or keys can't be fetched now; the caller may retry."""

    error = "temporarily_unavailable"
    status = 503
    internal = False


class InvalidClientId(IssuerError):
    """A client identifier URL can't be resolved to a usable Client ID Metadata Document
    (draft-ietf-oauth-client-id-metadata-document section 4.3: the request is aborted)."""

    error = "invalid_client"
    status = 400


class ListenError(IssuerError):
    """The service cannot listen on its address (in use, not this machine's, not permitted)."""

    error = "address_unavailable"
