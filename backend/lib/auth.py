"""Who is calling: a bearer API token, else the session cookie's user, else nobody.

The middleware only identifies; handlers that need a user declare the `current_user` dependency,
which answers 401 for anonymous callers (pages turn that into a redirect to the log-in form).
A bad token on HTTP is a 401 right here. On a websocket it only leaves the caller anonymous, with
`scope["auth"]` set to AUTH_REJECTED: a refused handshake hides its reason from a browser, so the
handler accepts and closes with 4401 instead.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Scope, Scopes

from backend.db import models as m
from backend.domain.accounts.services import ApiTokenService

SESSION_USER_KEY = "user_id"
AUTH_REJECTED = "rejected"
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/static/", "^/schema"]


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token from `Authorization: Bearer …`, or `?token=` on websockets (browsers can't set headers)."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == "websocket":
        return connection.query_params.get("token")
    return None


class AuthMiddleware(AbstractAuthenticationMiddleware):
    scopes: Scopes

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        token = bearer_token(connection)
        session_maker = connection.app.state.session_maker
        if token is not None:
            async with session_maker() as db:
                user = await ApiTokenService(session=db).resolve(token)
            if user is None:
                if connection.scope["type"] == "websocket":
                    return AuthenticationResult(user=None, auth=AUTH_REJECTED)
                raise NotAuthorizedException("invalid or revoked API token")
            return AuthenticationResult(user=user, auth="token")
        raw = connection.scope.get("session") or {}
        user_id = raw.get(SESSION_USER_KEY) if isinstance(raw, dict) else None
        if user_id is None:
            return AuthenticationResult(user=None, auth=None)
        async with session_maker() as db:
            user = await db.get(m.User, UUID(user_id))
        if user is None or not user.is_active:
            return AuthenticationResult(user=None, auth=None)
        return AuthenticationResult(user=user, auth="session")


async def provide_current_user(scope: Scope) -> m.User:
    """Works for HTTP and websocket handlers alike, since both carry the user in the scope."""
    user = scope.get("user")
    if user is None:
        raise NotAuthorizedException("log in or send an API token")
    return user
