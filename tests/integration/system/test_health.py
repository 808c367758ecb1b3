"""Liveness and readiness, including readiness failing by name when a dependency is gone."""

from __future__ import annotations

import socket
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backend.lib.security import new_api_token
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


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def without_postgres(settings: Settings) -> Settings:
    return replace(
        settings,
        core=replace(settings.core, database_url=f"postgresql://nobody@127.0.0.1:{unused_port()}/gone"),
    )


async def test_the_api_starts_without_postgres_and_ready_names_the_database(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(without_postgres(settings))) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert (checks["redis"], checks["storage"]) == ("ok", "ok")
    assert checks["database"].startswith("error: ")


async def test_an_api_call_without_postgres_is_503_with_retry_after(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(without_postgres(settings))) as c:
        r = await c.get(
            f"/api/exports/{uuid.uuid4()}", headers={"authorization": f"Bearer {new_api_token()}"}
        )
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "5"
    assert r.json()["detail"] == "the database is not answering; try again shortly"


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
