"""software-statement-issuer: mint, publish and audit OAuth software statements.

A software statement (RFC 7591 section 2.3) is a signed JWT carrying OAuth client metadata and
an ``iss`` claim. :class:`issuer.core.authority.Authority` is the core both fronts (``issuer`` CLI,
HTTP service) drive; :func:`issuer.verifier.verify` checks a statement as an authorization
server must.
"""

__version__ = "0.1.0"
