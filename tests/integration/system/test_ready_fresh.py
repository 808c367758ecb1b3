"""`/ready` checks Postgres and Redis with a new connection each time: a warm pooled connection can
outlive the server's willingness to take new ones (another redis-server took over the socket path,
a database that stopped accepting connections), and then said "ok" while every new client failed."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.redis_server import RedisServer


@pytest.fixture
def connections_refused(
    request: pytest.FixtureRequest, database_url: str
) -> Callable[[], AbstractAsyncContextManager[None]]:
    """While in use, the test database refuses new connections (ALLOW_CONNECTIONS false); open ones
    go on."""
    server_url: str = request.getfixturevalue("_server_url")
    name = make_url(database_url).database

    @asynccontextmanager
    async def refusing() -> AsyncIterator[None]:
        admin = create_async_engine(server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            yield
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            await admin.dispose()

    return refusing


async def test_ready_names_redis_once_new_connections_fail_though_a_warm_one_still_answers(
    settings: Settings, redis_server: RedisServer
) -> None:
    core = dataclasses.replace(settings.core, redis_url=redis_server.url)
    async with AsyncTestClient(app=create_app(dataclasses.replace(settings, core=core))) as c:
        assert (await c.get("/ready")).json()["checks"]["redis"] == "ok"
        redis_server.unlink_socket()

        r = await c.get("/ready")

    assert r.status_code == 503
    checks = r.json()["checks"]
    assert (checks["database"], checks["storage"]) == ("ok", "ok")
    assert checks["redis"].startswith("error: ConnectionError: Error 2 connecting to ")


async def test_ready_names_the_database_once_new_connections_fail_though_a_warm_one_still_answers(
    client: AsyncTestClient[Any], connections_refused: Callable[[], AbstractAsyncContextManager[None]]
) -> None:
    assert (await client.get("/ready")).json()["checks"]["database"] == "ok"

    async with connections_refused():
        r = await client.get("/ready")

    assert r.status_code == 503
    checks = r.json()["checks"]
    assert (checks["redis"], checks["storage"]) == ("ok", "ok")
    assert checks["database"].startswith("error: ")
    assert checks["database"].endswith("is not currently accepting connections")
