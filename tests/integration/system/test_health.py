"""Liveness and readiness, including readiness failing by name when a dependency is gone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from backend.server.asgi import create_app


async def test_health_answers_without_auth(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_checks_database_redis_and_storage(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "storage": "ok"}}


async def test_ready_is_503_naming_redis_when_redis_is_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    broken = replace(settings, core=replace(settings.core, redis_url=f"unix://{tmp_path}/missing.sock"))
    async with AsyncTestClient(app=create_app(broken)) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["storage"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")


async def test_ready_is_503_naming_storage_when_the_bucket_is_gone(
    settings: Settings, s3_store_settings: Any
) -> None:
    gone = replace(s3_store_settings, bucket="no-such-bucket")
    async with AsyncTestClient(
        app=create_app(replace(settings, core=replace(settings.core, storage=gone)))
    ) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["storage"].startswith("error: ")


async def test_openapi_schema_lists_the_api(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/api/videos", "/api/videos/{video_id}", "/api/auth/login", "/api/tokens"} <= set(paths)
    assert "/login" not in paths
