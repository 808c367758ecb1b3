"""Who is calling: a bearer API token, else the session cookie's user, else nobody.

The middleware only identifies; handlers that need a user declare the `current_user` dependency,
which answers 401 for anonymous callers (pages turn that into a redirect to the log-in form).
A bad token on HTTP is a 401 right here. On a websocket it only leaves the caller anonymous, with
`scope["auth"]` set to AUTH_REJECTED: a refused handshake hides its reason from a browser, so the
handler accepts and closes with 4401 instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Scope, Scopes

from backend.db.hotpath import HotPath, Row
from backend.lib import security
from backend.lib.token_cache import TokenCache

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
"""A token's last_used_at is refreshed at most this often, so reads don't each cost a write."""
SESSION_USER_KEY = "user_id"
AUTH_REJECTED = "rejected"
AUTH_SESSION = "session"
"""`scope["auth"]` of a caller the session cookie identified (a token's is a `TokenAuth`)."""
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


@dataclass(frozen=True, slots=True)
class CurrentUser:
    """Who is calling, as read on every request (backend.db.hotpath): a value, not an ORM instance,
    so it can never be flushed back by a session it was never loaded in."""

    id: UUID
    email: str
    is_operator: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Row) -> CurrentUser:
        return cls(id=row.id, email=row.email, is_operator=row.is_operator, created_at=row.created_at)


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """`scope["auth"]` of a caller identified by an API token: which one, so that its revocation
    can close the websockets it opened."""

    token_id: UUID


async def resolve_token(
    hotpath: HotPath, cache: TokenCache[CurrentUser], token: str
) -> tuple[TokenAuth, CurrentUser] | None:
    """The token and the active user behind it, or None for unknown/revoked tokens. A lookup
    (backend.lib.token_cache says how long its answer is reused) refreshes the token's
    last_used_at when that is older than LAST_USED_RESOLUTION."""
    if not security.looks_like_api_token(token):
        return None
    token_hash = security.hash_api_token(token)
    if (known := cache.get(token_hash)) is not None:
        return TokenAuth(known.token_id), known.user
    generation = cache.generation
    found = await hotpath.token_owner(token_hash)
    if found is None or not found.is_active:
        return None
    now = dt.datetime.now(dt.UTC)
    if found.last_used_at is None or now - found.last_used_at > LAST_USED_RESOLUTION:
        await hotpath.touch_token(found.token_id, now)
    user = CurrentUser.of(found)
    cache.put(token_hash, found.token_id, user, generation=generation)
    return TokenAuth(found.token_id), user


class AuthMiddleware(AbstractAuthenticationMiddleware):
    scopes: Scopes

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        token = bearer_token(connection)
        state = connection.app.state
        hotpath: HotPath = state.hotpath
        if token is not None:
            resolved = await resolve_token(hotpath, state.revocations.cache, token)
            if resolved is None:
                if connection.scope["type"] == "websocket":
                    return AuthenticationResult(user=None, auth=AUTH_REJECTED)
                raise NotAuthorizedException("invalid or revoked API token")
            auth, user = resolved
            return AuthenticationResult(user=user, auth=auth)
        raw = connection.scope.get("session") or {}
        user_id = raw.get(SESSION_USER_KEY) if isinstance(raw, dict) else None
        if user_id is None:
            return AuthenticationResult(user=None, auth=None)
        found = await hotpath.user(UUID(user_id))
        if found is None or not found.is_active:
            return AuthenticationResult(user=None, auth=None)
        return AuthenticationResult(user=CurrentUser.of(found), auth=AUTH_SESSION)


async def provide_current_user(scope: Scope) -> CurrentUser:
    """Works for HTTP and websocket handlers alike, since both carry the user in the scope."""
    user = scope.get("user")
    if user is None:
        raise NotAuthorizedException("log in or send an API token")
    return user
