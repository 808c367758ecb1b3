"""Server-side sessions in Redis that exist only once they hold something.

Litestar's backend stores the session of every response, an empty one included, under a new id
with a cookie: each bearer-token API call and each anonymous page view would leave a 14-day key in
Redis (unbounded growth anyone can drive) and cost a Redis write. Here a request that came without
a session cookie and leaves its session empty stores nothing and sets no cookie; everything else
(log-in, a live session, log-out clearing it) goes through Litestar unchanged.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, HTTPResponseStartEvent, ScopeSession


class LazySessionBackend(ServerSideSessionBackend):
    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: HTTPResponseStartEvent,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        never_stored = self.config.key not in connection.cookies
        if never_stored and (scope_session is Empty or not scope_session):
            return
        await super().store_in_message(scope_session, message, connection)


class LazySessionConfig(ServerSideSessionConfig):
    _backend_class = LazySessionBackend
