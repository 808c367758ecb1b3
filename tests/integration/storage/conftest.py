"""The `store` fixture runs every storage test against both backends; `leftovers` sees what a write left."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpu_worker.store import MIN_PART_SIZE, LocalStore, S3Store, Store, StoreSettings, open_store

SIGNING_SECRET = b"test-signing-secret"


@pytest.fixture
def local_store_settings(tmp_path: Path) -> StoreSettings:
    return StoreSettings(
        backend="local",
        local_root=tmp_path / "storage",
        part_size=MIN_PART_SIZE,
        signing_secret=SIGNING_SECRET,
        public_base_url="/files",
    )


@pytest.fixture(params=["local", "s3"])
def store_settings(request: pytest.FixtureRequest) -> StoreSettings:
    return request.getfixturevalue(f"{request.param}_store_settings")


@pytest.fixture
async def store(store_settings: StoreSettings) -> AsyncIterator[Store]:
    async with open_store(store_settings) as opened:
        yield opened


@pytest.fixture
async def local_store(local_store_settings: StoreSettings) -> AsyncIterator[LocalStore]:
    async with LocalStore(local_store_settings) as opened:
        yield opened


@pytest.fixture
async def s3_store(s3_store_settings: StoreSettings) -> AsyncIterator[S3Store]:
    async with S3Store(s3_store_settings) as opened:
        yield opened


def _s3_client(settings: StoreSettings) -> Any:
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)


@pytest.fixture
def s3_admin(s3_store_settings: StoreSettings) -> Any:
    """A plain sync client to look at the bucket from outside the store under test."""
    return _s3_client(s3_store_settings)


@pytest.fixture
def leftovers(store_settings: StoreSettings) -> Callable[[], list[str]]:
    """What a failed write could leave behind: in-progress multipart uploads (S3), any file at all (local)."""

    def find() -> list[str]:
        if store_settings.backend == "s3":
            answer = _s3_client(store_settings).list_multipart_uploads(Bucket=store_settings.bucket)
            return [upload["Key"] for upload in answer.get("Uploads", [])]
        root = store_settings.local_root
        return [str(path) for path in root.rglob("*") if path.is_file()] if root.exists() else []

    return find
