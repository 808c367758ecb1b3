"""What the process's long-lived Redis pub/sub listeners (progress fan-out, revocations) share: a
client of their own whose lost connection reaches the listener, the reconnect backoff, and the stop."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


def listener_client(url: str, client_name: str) -> Redis:
    """A client with redis-py's silent reconnects turned off: the listener must see a lost
    connection, since whatever was published meanwhile is lost (pub/sub is at-most-once)."""
    return Redis.from_url(url, client_name=client_name, retry=Retry(NoBackoff(), 0, supported_errors=()))


async def stop_listener(task: asyncio.Task[None] | None, redis: Redis) -> None:
    """Cancel the listener's task, wait for it, then close its client."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await redis.aclose()
