"""S3_PUBLIC_ENDPOINT_URL: presigned download URLs name the address browsers reach, while the store
keeps writing and reading through its own endpoint (compose's internal `http://minio:9000`)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gpu_worker.settings import WorkerSettings
from gpu_worker.store import Store, StoreSettings, open_store

KEY = "exports/public/talk.mp4"
BODY = b"rendered bytes " * 1000
UNREACHABLE = "http://downloads.invalid:9000"
"""A public name this machine cannot resolve: whatever works with it did not go through it."""

OpenStore = Callable[[str], AbstractAsyncContextManager[Store]]


@pytest.fixture
def public_store(s3_store_settings: StoreSettings) -> OpenStore:
    """The moto bucket's store with a public endpoint, holding one object written through it."""

    @asynccontextmanager
    async def opened(public_endpoint_url: str) -> AsyncIterator[Store]:
        settings = dataclasses.replace(s3_store_settings, public_endpoint_url=public_endpoint_url)
        async with open_store(settings) as store:
            async with store.open_writer(KEY, "video/mp4") as writer:
                await writer.write(BODY)
            yield store

    return opened


async def test_a_presigned_url_names_the_public_endpoint(public_store: OpenStore) -> None:
    async with public_store(UNREACHABLE) as store:
        url = await store.download_url(KEY, filename="talk.mp4")

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "downloads.invalid:9000")
    assert parts.path.endswith(f"/{KEY}")


async def test_uploads_and_reads_go_through_the_internal_endpoint(public_store: OpenStore) -> None:
    async with public_store(UNREACHABLE) as store:
        content = b"".join([chunk async for chunk in store.get_stream(KEY)])

    assert content == BODY


async def test_a_presigned_url_for_the_same_server_by_its_public_name_downloads_the_object(
    public_store: OpenStore, s3_server: str
) -> None:
    """`localhost` is the public name here; the store itself talks to 127.0.0.1."""
    public = s3_server.replace("127.0.0.1", "localhost")
    async with public_store(public) as store:
        url = await store.download_url(KEY, filename="talk.mp4")

    assert urlsplit(url).netloc == urlsplit(public).netloc
    async with httpx.AsyncClient() as browser:
        r = await browser.get(url)
    assert r.status_code == 200
    assert r.content == BODY
    assert r.headers["content-disposition"] == "attachment; filename=\"talk.mp4\"; filename*=UTF-8''talk.mp4"


def test_s3_public_endpoint_url_is_read_from_the_environment(tmp_path: Path) -> None:
    env = {
        "VEXPORT_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "s" * 32,
        "S3_BUCKET": "video-export",
        "S3_ENDPOINT_URL": "http://minio:9000",
        "S3_PUBLIC_ENDPOINT_URL": "https://files.example.com",
    }

    storage = WorkerSettings.from_env(env).storage

    assert (storage.endpoint_url, storage.public_endpoint_url) == (
        "http://minio:9000",
        "https://files.example.com",
    )
