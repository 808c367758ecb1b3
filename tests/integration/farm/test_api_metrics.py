"""The API's /metrics: operators only (404 for other users), exports by status and queue depth read
from the real Postgres and Redis on every scrape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.contract import ExportStatus
from gpu_worker.store import StoreSettings
from tests.fixtures.app import csrf_headers, forget_queue, make_settings, on_queue, queue_name, register
from tests.media import make_video
from tests.prom import parse, value


@pytest.fixture
async def metrics_settings(
    tmp_path: Path, database_url: str, redis_url: str, db_engine: AsyncEngine
) -> AsyncIterator[Settings]:
    """Settings with queues of their own, so the depth read here is this test's alone."""
    storage = StoreSettings(backend="local", local_root=tmp_path / "storage", signing_secret="t" * 32)
    made = make_settings(tmp_path, database_url, redis_url, storage)
    name = queue_name("test-metrics")
    yield on_queue(made, name)
    redis = Redis.from_url(redis_url)
    await forget_queue(redis, name)
    await redis.aclose()


@pytest.fixture
async def browser(metrics_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(metrics_settings)) as c:
        yield c


async def make_operator(db_engine: AsyncEngine, email: str) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(text("UPDATE users SET is_operator = true WHERE email = :email"), {"email": email})


async def test_anonymous_callers_are_sent_to_log_in(browser: AsyncTestClient[Any]) -> None:
    r = await browser.get("/metrics", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "/login?next=/metrics")


async def test_a_signed_in_user_who_is_not_an_operator_gets_404(browser: AsyncTestClient[Any]) -> None:
    await register(browser, "user@example.com")
    r = await browser.get("/metrics")
    assert r.status_code == 404


async def test_an_operators_api_token_scrapes_every_status_and_both_queues_at_zero(
    browser: AsyncTestClient[Any], metrics_settings: Settings, db_engine: AsyncEngine
) -> None:
    await register(browser, "ops@example.com")
    await make_operator(db_engine, "ops@example.com")
    r = await browser.post("/api/tokens", json={"name": "prometheus"}, headers=await csrf_headers(browser))
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    browser.cookies.clear()  # Prometheus has no session: only the bearer token

    r = await browser.get("/metrics", headers={"Authorization": f"Bearer {token}"})

    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    core = metrics_settings.core
    expected = {("vexport_exports", frozenset({("status", str(s))})): 0.0 for s in ExportStatus}
    for queue in (core.gpu_queue_name, core.cpu_queue_name):
        for state in ("queued", "active", "scheduled"):
            expected[("vexport_queue_jobs", frozenset({("queue", queue), ("state", state)}))] = 0.0
    assert parse(r.text) == expected


async def test_a_requested_export_shows_as_pending_and_queued_on_the_cpu_queue(
    browser: AsyncTestClient[Any], metrics_settings: Settings, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    """With no GPU worker alive an `auto` export is routed to the CPU queue."""
    await register(browser, "ops@example.com")
    await make_operator(db_engine, "ops@example.com")
    clip = make_video(tmp_path / "clip.mp4", seconds=1, fps=25, width=160, height=90)
    files = {"file": (clip.path.name, clip.path.read_bytes(), "video/mp4")}
    r = await browser.post("/api/videos", files=files, headers=await csrf_headers(browser))
    assert r.status_code == 201, r.text
    body = {"segments": [{"start": "0", "end": "0.5"}]}
    r = await browser.post(
        f"/api/videos/{r.json()['id']}/export", json=body, headers=await csrf_headers(browser)
    )
    assert r.status_code == 202, r.text

    samples = parse((await browser.get("/metrics")).text)

    core = metrics_settings.core
    assert value(samples, "vexport_exports", status="pending") == 1
    assert value(samples, "vexport_queue_jobs", queue=core.cpu_queue_name, state="queued") == 1
    assert value(samples, "vexport_queue_jobs", queue=core.gpu_queue_name, state="queued") == 0
