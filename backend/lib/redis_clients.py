"""How the API's request path talks to Redis, and which of its errors mean "Redis is not there".

Requests touch Redis for sessions, rate limits, the worker registry (routing), snapshots and the
queue; while Redis is down (or restarting, or still loading its data) those errors answer 503 with
Retry-After (backend.lib.exceptions), as a Postgres outage does, rather than 500.
"""

from __future__ import annotations

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
