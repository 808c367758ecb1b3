"""The worker's Redis clients: bounded reconnects with backoff, and a queue that waits out an outage.

redis-py retries a command a few times on a lost connection (exponential backoff), then raises.
SAQ's worker swallows a failed dequeue and starts the next one at once, so with Redis down an idle
worker would spin on a full core; `BackoffRedisQueue.dequeue` sleeps after such a failure (capped
exponential backoff, reset by the next success) and logs once per outage, not once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Self

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from saq.job import Job
from saq.queue.redis import RedisQueue

log = logging.getLogger(__name__)

COMMAND_RETRIES = 3
COMMAND_BACKOFF_BASE_S = 0.1
COMMAND_BACKOFF_CAP_S = 1.0
"""redis-py's own retries of one command on a lost connection: about 0.1 + 0.2 + 0.4 s, then it raises."""
HEALTH_CHECK_INTERVAL_S = 30
CONNECT_TIMEOUT_S = 5.0
"""A Redis host that drops packets fails a connect after this, instead of hanging the worker."""
DEQUEUE_BACKOFF_BASE_S = 0.25
DEQUEUE_BACKOFF_CAP_S = 2.0
"""Sleeps between failed dequeues: 0.25, 0.5, 1, 2, 2 … s, so a job is taken about 2 s after Redis is back."""
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def redis_client(url: str) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://) that reconnects with bounded backoff."""
    backoff = ExponentialBackoff(cap=COMMAND_BACKOFF_CAP_S, base=COMMAND_BACKOFF_BASE_S)
    return Redis.from_url(
        url,
        retry=Retry(backoff, retries=COMMAND_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
    )


class BackoffRedisQueue(RedisQueue):
    """A RedisQueue whose dequeue backs off while Redis is unreachable."""

    def __init__(
        self,
        redis: Redis,
        name: str = "default",
        *,
        backoff_base_s: float = DEQUEUE_BACKOFF_BASE_S,
        backoff_cap_s: float = DEQUEUE_BACKOFF_CAP_S,
    ) -> None:
        super().__init__(redis, name=name)
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._failures = 0
        self._outage_since: float | None = None

    @classmethod
    def connect_to(cls, url: str, name: str) -> Self:
        # Not Queue.from_url: saq's generic one refuses unix:// (the embedded Redis socket).
        return cls(redis_client(url), name=name)

    @property
    def failures(self) -> int:
        """Failed dequeues since the last successful one."""
        return self._failures

    def backoff_s(self, failures: int) -> float:
        """The sleep after the `failures`-th failed dequeue in a row (1-based)."""
        return min(self._backoff_cap_s, self._backoff_base_s * 2 ** (failures - 1))

    async def disconnect(self) -> None:
        """Close the clients; with Redis down, saq's unsubscribe cannot be sent, and need not be."""
        try:
            await super().disconnect()
        except OUTAGE_ERRORS:
            log.info("queue %s: Redis unreachable at disconnect; connections closed", self.name)
            await self.redis.aclose()
            await self.redis.connection_pool.disconnect()

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109
        try:
            job = await super().dequeue(timeout=timeout, poll_interval=poll_interval)
        except OUTAGE_ERRORS as exc:
            self._failures += 1
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("queue %s: Redis unreachable (%s); retrying with backoff", self.name, exc)
            await asyncio.sleep(self.backoff_s(self._failures))
            raise  # SAQ drops it (no job yet) and calls dequeue again
        if self._outage_since is not None:
            down_s = time.monotonic() - self._outage_since
            log.warning("queue %s: Redis reachable again after %.1f s", self.name, down_s)
            self._outage_since = None
        self._failures = 0
        return job
