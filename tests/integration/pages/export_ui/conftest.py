"""The export pages on real Postgres, Redis (queue + progress) and the local store.

Each test gets settings with a queue of its own, so no worker of another test takes its jobs; the
worker itself is simulated by writing rows directly (the real one has its own tests).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from saq.queue.redis import RedisQueue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.app import MakeSettings, csrf_headers, register

Sql = Callable[..., Awaitable[Any]]
HTMX = {"HX-Request": "true"}


@pytest.fixture
def ui_settings(make_export_settings: MakeSettings) -> Settings:
    return make_export_settings()


async def logged_in(settings: Settings, email: str) -> AsyncTestClient[Any]:
    """A browser session (cookie + CSRF) on its own app instance; exit it when done."""
    c = AsyncTestClient(app=create_app(settings))
    await c.__aenter__()
    await register(c, email)
    c.headers.update({**await csrf_headers(c), **HTMX})
    return c


@pytest.fixture
async def browser(ui_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    c = await logged_in(ui_settings, "owner@example.com")
    yield c
    await c.__aexit__(None, None, None)


@pytest.fixture
async def stranger(ui_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    c = await logged_in(ui_settings, "stranger@example.com")
    yield c
    await c.__aexit__(None, None, None)


async def upload(c: AsyncTestClient[Any], path: Path, name: str | None = None) -> str:
    files = {"file": (name or path.name, path.read_bytes(), "video/mp4")}
    r = await c.post("/api/videos", files=files)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture
async def video_id(browser: AsyncTestClient[Any], clip: Path) -> str:
    return await upload(browser, clip)


@pytest.fixture
async def queue(ui_settings: Settings) -> AsyncIterator[RedisQueue]:
    q = RedisQueue.from_url(ui_settings.core.redis_url or "", name=ui_settings.core.queue_name)
    await q.connect()
    yield q
    await q.disconnect()


@pytest.fixture
def sql(db_engine: AsyncEngine) -> Sql:
    """Run a statement as another process would (the worker), returning the rows of a SELECT."""

    async def run(statement: str, **params: Any) -> Any:
        async with db_engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return result.all() if result.returns_rows else None

    return run


FORM = {
    "segments": '[{"start":"0.5","end":"1.5"}]',
    "resolution": "720p",
    "quality": "standard",
    "format": "mp4",
    "codec": "h264",
    "mode": "single",
    "encoder": "auto",
}


async def submit(c: AsyncTestClient[Any], video: str, **changes: str) -> Any:
    """The dialog's submit, as htmx sends it (urlencoded form, CSRF header)."""
    return await c.post(f"/videos/{video}/exports", data={**FORM, **changes})


def card_ids(html: str) -> list[str]:
    return re.findall(r'<article id="export-([0-9a-f-]{36})"', html)


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="history-([0-9a-f-]{36})"', html)


async def start(c: AsyncTestClient[Any], video: str, **changes: str) -> str:
    r = await submit(c, video, **changes)
    assert r.status_code == 201, r.text
    (export_id,) = card_ids(r.text)
    return export_id
