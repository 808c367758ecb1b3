from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.settings import MiB
from gpu_worker.store import StoreSettings
from tests.fixtures.app import make_settings, register
from tests.media import make_garbage, make_truncated


@pytest.fixture
def any_store_settings(
    tmp_path: Path, database_url: str, redis_url: str, store_settings: StoreSettings, db_engine: Any
) -> Settings:
    """The web settings on each storage backend in turn (local dir, then S3 over HTTP)."""
    return make_settings(tmp_path, database_url, redis_url, store_settings, max_upload_bytes=2 * MiB)


@pytest.fixture
async def app_client(any_store_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(any_store_settings)) as c:
        await register(c, "owner@example.com")
        yield c


@pytest.fixture
async def owner(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """owner@example.com, logged in, on the local store (send `csrf_headers` on unsafe requests)."""
    async with AsyncTestClient(app=create_app(settings)) as c:
        await register(c, "owner@example.com")
        yield c


@pytest.fixture(scope="session")
def garbage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_garbage(tmp_path_factory.mktemp("media") / "garbage.mp4")


@pytest.fixture(scope="session")
def truncated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_truncated(tmp_path_factory.mktemp("media") / "truncated.mp4")
