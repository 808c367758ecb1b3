"""Real services for every test that asks for them.

Postgres and Redis come from TEST_DATABASE_URL / TEST_REDIS_URL (CI), else embedded ones started
once per session. Each session gets its own freshly migrated database (so the Alembic migrations
are exercised on every run) and drops it at the end; rows are removed after each test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.db.models import metadata

pytest_plugins = ["tests.fixtures.s3", "tests.fixtures.app", "tests.fixtures.redis_server"]


def _asyncpg(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql+asyncpg{sep}{rest}" if scheme in {"postgres", "postgresql"} else url


@pytest.fixture(scope="session")
def _server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL for a Postgres server: the CI one, else an embedded one for this session."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield _asyncpg(url)
        return
    from backend.embedded import embedded_postgres

    with embedded_postgres(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(_server_url: str) -> Iterator[str]:
    """A new database on that server, migrated to head with Alembic, dropped after the session."""
    from backend.db.migrate import upgrade

    name = f"vexport_test_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(_server_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))

    async def admin(sql: str) -> None:
        engine = create_async_engine(_server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    from backend.embedded import embedded_redis

    with embedded_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test Redis, closed after the test."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database; every table is emptied after the test."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    yield engine
    async with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    await engine.dispose()


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    path = tmp_path / "media"
    path.mkdir()
    return path
