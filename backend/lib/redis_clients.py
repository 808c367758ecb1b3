"""How the API's request path talks to Redis, and which of its errors mean "Redis is not there".

Requests touch Redis for sessions, rate limits, the worker registry (routing), snapshots and the
queue; while Redis is down (or restarting, or still loading its data) those errors answer 503 with
Retry-After (backend.lib.exceptions), as a Postgres outage does, rather than 500.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

REQUEST_TIMEOUT_S = 2.0
"""The longest one Redis command (or connect) may hold a request: Redis answers in well under a
millisecond, so past this it counts as down (503) rather than holding every request open."""
RECONNECT_RETRIES = 2
"""A command that finds its pooled connection closed (Redis restarted) is retried on a new one,
twice, about 0.05 and 0.1 s apart; a timeout is not retried."""

WS_TRY_AGAIN_LATER = 1013
WS_TRY_AGAIN_LATER_REASON = "live progress unavailable (Redis); try again later"
"""A websocket's close while Redis is away: RFC 6455's "try again later", on which clients (the
htmx ws extension too) reconnect after a pause."""

REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
"""Redis unreachable, not answering in time, or not ready to serve: refused or reset connections,
BusyLoadingError (still loading its data set after a restart), MaxConnectionsError, and a replica
that has not been promoted yet after a failover (ReadOnlyError)."""


def request_client(url: str) -> Redis:
    """The API's shared client: bounded connect and command times, and few, quick reconnects
    (redis-py's default retries a timed-out command three times with seconds of backoff)."""
    retry = Retry(
        ExponentialBackoff(cap=0.5, base=0.05), RECONNECT_RETRIES, supported_errors=(RedisConnectionError,)
    )
    return Redis.from_url(
        url, socket_connect_timeout=REQUEST_TIMEOUT_S, socket_timeout=REQUEST_TIMEOUT_S, retry=retry
    )


class SocketsTryAgainLater:
    """Middleware (first in the stack): a websocket whose session cannot be read because Redis is
    away is accepted, then closed with 1013 like the progress sockets' own Redis failures
    (backend.domain.exports.ws.live_inbox), instead of a refused handshake the client cannot tell
    from a lasting refusal. HTTP requests pass through untouched; their errors answer 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        accepted = False

        async def watch(message: Message) -> None:
            nonlocal accepted
            accepted = accepted or message["type"] == "websocket.accept"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except REDIS_UNAVAILABLE:
            if not accepted:
                await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
            await send(
                {"type": "websocket.close", "code": WS_TRY_AGAIN_LATER, "reason": WS_TRY_AGAIN_LATER_REASON}
            )
