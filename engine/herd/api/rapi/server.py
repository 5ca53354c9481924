"""The RAPI listener: the HTTPS API server with Ganeti's credentials and error bodies.

The same TLS, connection caps, pre-authentication deadline and failure rate limiting as
``/v1`` (it is the same server class); what differs is who may log in (the users file
as well as Herd's tokens), how an error is worded, and that Ganeti's client sends JSON
bodies on GET (job waits) and DELETE.
"""

from __future__ import annotations

import base64
import binascii
from http import HTTPStatus
from typing import Any

from herd.api.rapi.users import REALM, UsersFile
from herd.api.server import HTTPSAPIServer
from herd.auth import AuthStore, Principal
from herd.errors import AuthenticationError, HerdError


class RapiAuthenticator:
    """Bearer tokens from Herd's credential store, Basic logins from the users file."""

    def __init__(self, tokens: AuthStore, users: UsersFile) -> None:
        self.tokens = tokens
        self.users = users

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return self.tokens.authenticate(authorization)
        try:
            pair = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("invalid credentials", reason="invalid") from None
        name, sep, password = pair.partition(":")
        if not sep:
            raise AuthenticationError("invalid credentials", reason="invalid")
        return self.users.authenticate(name, password)


def error_body(exc: HerdError) -> dict[str, Any]:
    """Ganeti's error document; its client words an exception from these three keys."""
    status = exc.http_status
    return {"code": status, "message": HTTPStatus(status).phrase, "explain": exc.message}


class RapiServer(HTTPSAPIServer):
    """:class:`HTTPSAPIServer` speaking Ganeti's dialect (see the module docstring)."""

    body_methods = frozenset({"GET", "POST", "PUT", "DELETE"})

    def error_body(self, exc: HerdError) -> Any:
        return error_body(exc)

    def challenge(self, exc: HerdError) -> tuple[tuple[str, str], ...]:
        if isinstance(exc, AuthenticationError):
            return (("WWW-Authenticate", f'Basic realm="{REALM}"'),)
        return super().challenge(exc)
