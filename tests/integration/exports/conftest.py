"""Exports against real Postgres, Redis (queue + progress) and storage; the worker is simulated by
writing the row and the output object directly (the real worker has its own tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from saq.queue.redis import RedisQueue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.domain.exports.fanout import client_name
from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.store import Store, new_key, open_store
from tests.fixtures.app import MakeSettings, csrf_headers, register


@pytest.fixture
def export_settings(make_export_settings: MakeSettings) -> Settings:
    return make_export_settings()


@pytest.fixture
async def api(export_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """A logged-in browser session (cookie + CSRF) on the local store."""
    async with AsyncTestClient(app=create_app(export_settings)) as c:
        await register(c, "owner@example.com")
        yield c


@pytest.fixture
async def queue(export_settings: Settings) -> AsyncIterator[RedisQueue]:
    """The test's view of the SAQ queue the API enqueues into."""
    q = RedisQueue.from_url(export_settings.core.redis_url or "", name=export_settings.core.queue_name)
    await q.connect()
    yield q
    await q.disconnect()


@pytest.fixture
async def store(export_settings: Settings) -> AsyncIterator[Store]:
    async with open_store(export_settings.core.storage) as s:
        yield s


async def upload(c: AsyncTestClient[Any], path: Path) -> str:
    files = {"file": (path.name, path.read_bytes(), "video/mp4")}
    r = await c.post("/api/videos", files=files, headers=await csrf_headers(c))
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
async def video_id(api: AsyncTestClient[Any], clip: Path) -> str:
    return await upload(api, clip)


async def request_export(
    c: AsyncTestClient[Any], video: str, body: dict[str, Any] | None = None, **headers: str
) -> Any:
    payload = {"resolution": "720p", "segments": [{"start": "0.5", "end": "1.5"}]} if body is None else body
    return await c.post(
        f"/api/videos/{video}/export", json=payload, headers={**await csrf_headers(c), **headers}
    )


Sql = Callable[..., Awaitable[None]]


@pytest.fixture
def sql(db_engine: AsyncEngine) -> Sql:
    """Run a statement as another process would (the worker, an operator)."""

    async def run(statement: str, **params: Any) -> None:
        async with db_engine.begin() as conn:
            await conn.execute(text(statement), params)

    return run


Complete = Callable[..., Awaitable[str]]


@pytest.fixture
def complete(sql: Sql, store: Store) -> Complete:
    """Do what a worker does at the end of a render: store the output, mark the row completed."""

    async def finish(export_id: str, data: bytes, suffix: str = "mp4") -> str:
        key = new_key("exports", export_id, suffix)
        async with store.open_writer(key) as writer:
            await writer.write(data)
        await sql(
            "UPDATE exports SET status = 'completed', progress = 100, output_key = :key, "
            "size_bytes = :size, finished_at = now() WHERE id = :id",
            key=key,
            size=len(data),
            id=export_id,
        )
        return key

    return finish


async def drop_fanout_connection(redis: Redis) -> None:
    """Kill this process's progress fan-out connection (only it: other test runs may share Redis)."""
    clients = await redis.client_list()
    ids = [c["id"] for c in clients if c.get("name") == client_name()]
    assert ids, "no fan-out connection to drop"
    for id_ in ids:
        await redis.client_kill_filter(_id=id_)
