"""A Redis outage answers 503 problem+json with Retry-After, as a Postgres outage does, not 500.

The app runs on a Redis of the test's own (tests.fixtures.redis_server), killed with SIGKILL
mid-test; Postgres and storage stay up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.lib.redis_clients import REQUEST_TIMEOUT_S
from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.app import PASSWORD, csrf_headers, register
from tests.fixtures.redis_server import RedisServer
from tests.integration.exports.conftest import upload

UNAVAILABLE = {
    "type": "about:blank",
    "title": "Service Unavailable",
    "status": 503,
    "detail": "the queue and session store (Redis) is not answering; try again shortly",
}


@pytest.fixture
async def browser(settings: Settings, redis_server: RedisServer) -> AsyncIterator[AsyncTestClient[Any]]:
    """A logged-in browser session on an app whose Redis is `redis_server`."""
    core = dataclasses.replace(settings.core, redis_url=redis_server.url)
    async with AsyncTestClient(app=create_app(dataclasses.replace(settings, core=core))) as c:
        await register(c, "owner@example.com")
        yield c


def assert_unavailable(r: Any) -> None:
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "5"
    assert r.json() == UNAVAILABLE


async def test_requesting_an_export_while_redis_is_down_is_503_and_records_nothing(
    browser: AsyncTestClient[Any], redis_server: RedisServer, clip: Path, db_engine: AsyncEngine
) -> None:
    video = await upload(browser, clip)
    headers = await csrf_headers(browser)
    redis_server.kill()

    r = await browser.post(f"/api/videos/{video}/export", json={"resolution": "720p"}, headers=headers)

    assert_unavailable(r)
    async with db_engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM exports")) == 0


async def test_a_request_while_redis_hangs_is_503_after_the_request_timeout(
    browser: AsyncTestClient[Any], redis_server: RedisServer, clip: Path
) -> None:
    video = await upload(browser, clip)
    headers = await csrf_headers(browser)
    with redis_server.paused():
        started = time.monotonic()
        r = await browser.post(f"/api/videos/{video}/export", json={"resolution": "720p"}, headers=headers)
        elapsed = time.monotonic() - started

    assert_unavailable(r)
    assert REQUEST_TIMEOUT_S <= elapsed < 2 * REQUEST_TIMEOUT_S


async def test_logging_in_while_redis_is_down_is_503(
    browser: AsyncTestClient[Any], redis_server: RedisServer
) -> None:
    headers = await csrf_headers(browser)
    redis_server.kill()

    r = await browser.post(
        "/api/auth/login", json={"email": "owner@example.com", "password": PASSWORD}, headers=headers
    )

    assert_unavailable(r)


async def test_a_session_request_while_redis_is_down_is_503(
    browser: AsyncTestClient[Any], redis_server: RedisServer
) -> None:
    redis_server.kill()

    assert_unavailable(await browser.get("/api/auth/me"))


async def test_a_page_while_redis_is_down_is_a_503_page_with_retry_after(
    browser: AsyncTestClient[Any], redis_server: RedisServer
) -> None:
    redis_server.kill()

    r = await browser.get("/videos")

    assert r.status_code == 503
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["retry-after"] == "5"
    assert "The queue and session store (Redis) is not answering; try again shortly." in r.text
