"""Fixtures for the job tests: a `farm` on the local store or on S3, and tiny generated media."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gpu_worker.rows import ExportRows
from gpu_worker.store import StoreSettings
from tests.integration.jobs.farm import Farm, open_farm
from tests.media import MadeVideo, make_garbage, make_video


@pytest.fixture
async def farm(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    db_engine: AsyncEngine,
    local_store_settings: StoreSettings,
) -> AsyncIterator[Farm]:
    async with open_farm(tmp_path, database_url, redis_url, db_engine, local_store_settings) as f:
        yield f


@pytest.fixture
async def s3_farm(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    db_engine: AsyncEngine,
    s3_store_settings: StoreSettings,
) -> AsyncIterator[Farm]:
    async with open_farm(tmp_path, database_url, redis_url, db_engine, s3_store_settings) as f:
        yield f


@pytest.fixture
async def rows(farm: Farm) -> AsyncIterator[ExportRows]:
    """The worker's row repository on the test database, as the task uses it."""
    rows = ExportRows.connect(farm.settings.async_database_url)
    yield rows
    await rows.aclose()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """2 s, 25 fps, 320x180 H.264 + AAC: 50 frames."""
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=2, fps=25)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """40 s at 320x180: a render of several seconds, so a cancel always lands half-way.
    The cancel tests stop it after about a second, so they never pay for the whole render."""
    return make_video(tmp_path_factory.mktemp("media") / "long.mp4", seconds=40, fps=25)


@pytest.fixture(scope="session")
def garbage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_garbage(tmp_path_factory.mktemp("media") / "garbage.mp4")
