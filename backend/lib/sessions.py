"""Server-side sessions in Redis that exist only once they hold something, and get a new id at log-in.

Litestar's backend stores the session of every response, an empty one included, under a new id
with a cookie: each bearer-token API call and each anonymous page view would leave a 14-day key in
Redis (unbounded growth anyone can drive) and cost a Redis write. Here a request that came without
a session cookie and leaves its session empty stores nothing and sets no cookie.

Litestar also keeps the id the browser sent, so a session id planted before log-in (session
fixation) would become the logged-in session. `rotate_session` (called at log-in) makes this
response store the session under a fresh id and delete the old one.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, HTTPResponseStartEvent, ScopeSession

_ROTATED_ID = "vexport_rotated_session_id"
SESSION_COOKIE = "session"


def session_ref(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """A digest of the session id the browser sent: names its session (to close its websockets at
    log-out, across processes) without passing the id itself around."""
    sent = connection.cookies.get(SESSION_COOKIE)
    return hashlib.sha256(sent.encode()).hexdigest() if sent else None


def rotate_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Store this request's session under a new id (and drop the one the browser sent)."""
    connection.scope.setdefault("state", {})[_ROTATED_ID] = secrets.token_hex(32)


class LazySessionBackend(ServerSideSessionBackend):
    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        rotated: str | None = connection.scope.get("state", {}).get(_ROTATED_ID)
        return rotated or super().get_session_id(connection)

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: HTTPResponseStartEvent,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        sent = connection.cookies.get(self.config.key)
        if sent is None and (scope_session is Empty or not scope_session):
            return
        if sent and connection.scope.get("state", {}).get(_ROTATED_ID):
            await self.delete(sent, store=self.config.get_store_from_app(connection.scope["app"]))
        await super().store_in_message(scope_session, message, connection)


class LazySessionConfig(ServerSideSessionConfig):
    _backend_class = LazySessionBackend
