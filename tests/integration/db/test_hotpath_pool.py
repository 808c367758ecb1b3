"""The hot-path pool (backend.db.hotpath) against a real Postgres: a read whose pooled connection died
before the pool noticed runs again on a fresh connection instead of failing the request."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.db import hotpath as hotpath_module
from backend.db.hotpath import APPLICATION_NAME, DatabaseUnavailableError, HotPath


@pytest.fixture
async def hotpath(database_url: str, db_engine: AsyncEngine) -> AsyncIterator[HotPath]:
    opened = await HotPath.open(database_url)
    yield opened
    await opened.aclose()


def terminate_pool_connections_while_the_loop_is_blocked(database_url: str) -> None:
    """Terminate the pool's backends from another thread, and wait for them to exit, without
    letting this thread's event loop run: the pool cannot have noticed when the next read starts."""

    async def terminate() -> None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": APPLICATION_NAME},
            )
        await engine.dispose()

    worker = threading.Thread(target=lambda: asyncio.run(terminate()))
    worker.start()
    worker.join()


async def test_a_read_on_a_connection_postgres_dropped_is_answered_from_a_fresh_one(
    hotpath: HotPath, database_url: str, db_engine: AsyncEngine
) -> None:
    user_id = uuid.uuid4()
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, created_at, updated_at) "
                "VALUES (:id, 'pool@example.com', 'x', now(), now())"
            ),
            {"id": user_id},
        )
    assert (await hotpath.user(user_id)) is not None  # the pool now holds a live connection
    terminate_pool_connections_while_the_loop_is_blocked(database_url)
    row = await hotpath.user(user_id)
    assert row is not None
    assert row.email == "pool@example.com"


async def test_a_read_that_postgres_holds_past_the_timeout_is_reported_unavailable(
    hotpath: HotPath, db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotpath_module, "READ_TIMEOUT_S", 0.5)
    async with db_engine.connect() as locker:
        await locker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="TimeoutError"):
            await hotpath.user(uuid.uuid4())
        waited = time.monotonic() - started
        await locker.rollback()
    assert 0.5 <= waited < 2.0
    assert await hotpath.user(uuid.uuid4()) is None  # the pool still answers once the lock is gone


async def test_the_urls_statement_cache_option_reaches_the_pool(
    database_url: str, db_engine: AsyncEngine
) -> None:
    opened = await HotPath.open(f"{database_url}?prepared_statement_cache_size=0")
    try:
        assert await opened.user(uuid.uuid4()) is None
    finally:
        await opened.aclose()
