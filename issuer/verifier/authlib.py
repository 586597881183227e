"""Authlib integration (``pip install 'software-statement-issuer[authlib]'``).

Authlib's ``ClientRegistrationEndpoint`` drops software statements unless configured, and then
checks only their signature (no ``iss``, no ``exp``, no metadata rules). Mix
:class:`SoftwareStatementRegistration` in before it and the whole job is done by
:class:`~issuer.verifier.registration.Registrar`, with Authlib's own error types::

    class RegistrationEndpoint(SoftwareStatementRegistration, ClientRegistrationEndpoint):
        registrar = Registrar(StatementVerifier(trusted=[TrustedIssuer(...)]))

        def authenticate_token(self, request): ...
        def save_client(self, client_info, client_metadata, request): ...
        def get_server_metadata(self): ...
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc7591 import (
    InvalidClientMetadataError,
    InvalidRedirectURIError,
    InvalidSoftwareStatementError,
    UnapprovedSoftwareStatementError,
)

from issuer.core import metadata
from issuer.core.errors import IssuerError
from issuer.verifier.registration import Registrar

_ERRORS: dict[str, type[OAuth2Error]] = {
    "invalid_software_statement": InvalidSoftwareStatementError,
    "unapproved_software_statement": UnapprovedSoftwareStatementError,
    "invalid_redirect_uri": InvalidRedirectURIError,
    "invalid_client_metadata": InvalidClientMetadataError,
}


def authlib_error(error: IssuerError) -> OAuth2Error:
    """The Authlib error of the same RFC 7591 section 3.2.2 code."""
    return _ERRORS.get(error.error, InvalidRequestError)(description=error.description)


class _MergedPayload:
    """Stands in for Authlib's JSON payload: the merged metadata, statement already used."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class SoftwareStatementRegistration:
    """Mixin for ``authlib.oauth2.rfc7591.ClientRegistrationEndpoint``: verifies the
    statement with a :class:`Registrar`, lets its values win, runs Authlib's own metadata
    validation on the result, and keeps every claim the statement carries (Authlib's claims
    classes know only some: ``dpop_bound_access_tokens``, language-tagged names and others
    would be dropped). The response echoes the statement (RFC 7591 section 3.2.1)."""

    registrar: Registrar

    def extract_client_metadata(self, request: Any) -> Any:
        try:
            registration = self.registrar.register(request.payload.data)
        except IssuerError as exc:
            raise authlib_error(exc) from None
        request.registration = registration  # for save_client: the audit fields, the statement
        original = request.payload
        request.payload = _MergedPayload(registration.metadata)
        try:
            validated = super().extract_client_metadata(request)  # type: ignore[misc]
        finally:
            request.payload = original
        return {**registration.metadata, **validated}

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        """Authlib's client id, and a ``client_secret`` only for a client that authenticates
        with one (RFC 7591 section 3.2.1)."""
        info: dict[str, Any] = super().generate_client_info(request)  # type: ignore[misc]
        if not metadata.needs_client_secret(request.registration.metadata):
            info.pop("client_secret", None)
            info.pop("client_secret_expires_at", None)
        return info
