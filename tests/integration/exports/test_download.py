"""Downloads (409 until completed; local: streamed with ranges; S3: presigned redirect), signed local
links, and DELETE = cancel + remove files + remove the row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from saq.queue.redis import RedisQueue

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.contract import ProgressMessage, export_channel, progress_key
from gpu_worker.progress import SNAPSHOT_TTL_S, publish_progress, read_snapshot
from gpu_worker.store import LocalStore, Store, StoreSettings, content_disposition, open_store
from tests.fixtures.app import csrf_headers, register
from tests.integration.exports.conftest import Complete, MakeSettings, Sql, request_export, upload
from tests.media import make_video

DATA = bytes(range(256)) * 40  # 10 240 bytes


async def test_download_before_completion_is_409_saying_the_status(
    api: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    r = await api.get(f"/api/exports/{export_id}/download")
    assert (r.status_code, r.json()["detail"]) == (409, "export is not completed (status: pending)")
    await sql("UPDATE exports SET status = 'processing' WHERE id = :id", id=export_id)
    r = await api.get(f"/api/exports/{export_id}/download")
    assert (r.status_code, r.json()["detail"]) == (409, "export is not completed (status: processing)")


async def test_local_download_streams_the_file_named_after_the_video(
    api: AsyncTestClient[Any], video_id: str, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    await complete(export_id, DATA)
    r = await api.get(f"/api/exports/{export_id}/download")
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["content-length"] == str(len(DATA))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"] == content_disposition("holiday clip (180p).mp4")
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"holiday clip (180p).mp4\"; filename*=UTF-8''holiday%20clip%20%28180p%29.mp4"
    )


@pytest.mark.parametrize(
    ("size", "body", "name"),
    [
        ((640, 272), {"resolution": "720p"}, "wide shot (272p).mp4"),
        ((640, 272), {"resolution": "source"}, "wide shot (272p).mp4"),
        ((1280, 720), {"resolution": "480p", "format": "webm"}, "wide shot (480p).webm"),
        (
            (640, 272),
            {"resolution": "720p", "mode": "clips", "segments": [{"start": 0, "end": 1}]},
            "wide shot (272p clips).zip",
        ),
    ],
)
async def test_a_download_is_named_by_the_height_it_holds_not_the_preset_asked_for(
    api: AsyncTestClient[Any],
    complete: Complete,
    tmp_path: Path,
    size: tuple[int, int],
    body: dict[str, Any],
    name: str,
) -> None:
    """Presets never upscale: 720p asked of a 640x272 source holds 640x272, so it is named 272p."""
    source = make_video(tmp_path / "wide shot.mp4", seconds=1, width=size[0], height=size[1]).path
    export_id = (await request_export(api, await upload(api, source), body)).json()["id"]
    await complete(export_id, DATA, name.rpartition(".")[2])
    r = await api.get(f"/api/exports/{export_id}/download")
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == content_disposition(name)


async def test_local_download_serves_byte_ranges(
    api: AsyncTestClient[Any], video_id: str, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    await complete(export_id, DATA)
    url = f"/api/exports/{export_id}/download"
    cases = {
        "bytes=10-19": (10, 20),
        "bytes=10240-": None,
        "bytes=-5": (10235, 10240),
        "bytes=10000-99999": (10000, 10240),
    }
    for header, span in cases.items():
        r = await api.get(url, headers={"range": header})
        if span is None:
            assert r.status_code == 416, header
            assert r.headers["content-range"] == "bytes */10240"
            continue
        start, end = span
        assert r.status_code == 206, header
        assert r.content == DATA[start:end]
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/10240"
        assert r.headers["content-length"] == str(end - start)
    r = await api.get(url, headers={"range": "bytes=0-1,4-5"})  # several ranges: the whole file
    assert (r.status_code, r.content) == (200, DATA)


async def test_a_clips_export_downloads_as_a_zip(
    api: AsyncTestClient[Any], video_id: str, complete: Complete
) -> None:
    body = {"mode": "clips", "segments": [{"start": "0", "end": "0.5"}, {"start": "1", "end": "1.5"}]}
    export_id = (await request_export(api, video_id, body)).json()["id"]
    await complete(export_id, b"PK\x05\x06" + bytes(18), suffix="zip")
    r = await api.get(f"/api/exports/{export_id}/download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == content_disposition("holiday clip (180p clips).zip")


async def test_s3_download_redirects_to_a_presigned_url_that_serves_the_bytes(
    make_export_settings: MakeSettings, s3_store_settings: StoreSettings, clip: Path, sql: Sql
) -> None:
    settings = make_export_settings(s3_store_settings)
    async with AsyncTestClient(app=create_app(settings)) as c, open_store(settings.core.storage) as store:
        await register(c, "owner@example.com")
        export_id = (await request_export(c, await upload(c, clip))).json()["id"]
        key = f"exports/{export_id}/out.mp4"
        await store.put_stream(key, _once(DATA))
        await sql(
            "UPDATE exports SET status = 'completed', output_key = :key WHERE id = :id", key=key, id=export_id
        )
        r = await c.get(f"/api/exports/{export_id}/download", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"].startswith(f"{s3_store_settings.endpoint_url}/")
    async with httpx.AsyncClient() as plain:
        got = await plain.get(r.headers["location"])
    assert got.status_code == 200
    assert got.content == DATA
    assert got.headers["content-disposition"] == content_disposition("holiday clip (180p).mp4")


async def test_a_signed_local_link_works_without_login_until_it_expires(
    export_settings: Settings, store: Store, complete: Complete, api: AsyncTestClient[Any], video_id: str
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    key = await complete(export_id, DATA)
    assert isinstance(store, LocalStore)
    good = await store.download_url(key, filename="holiday clip (720p).mp4")
    hour_ago = time.time() - 3600
    with pytest.MonkeyPatch.context() as mp:  # a link made an hour ago, valid for five minutes
        mp.setattr(time, "time", lambda: hour_ago)
        expired = await store.download_url(key, filename="holiday clip (720p).mp4")
    async with AsyncTestClient(app=create_app(export_settings)) as anonymous:
        r = await anonymous.get(good)
        assert r.status_code == 200
        assert r.content == DATA
        assert r.headers["content-disposition"] == content_disposition("holiday clip (720p).mp4")
        assert "set-cookie" not in r.headers  # no session, no CSRF cookie: a link, not a visit
        assert (await anonymous.get(good, headers={"range": "bytes=0-3"})).content == DATA[:4]
        for bad in (expired, good.replace("sig=", "sig=0"), good.replace("720p", "1080p")):
            r = await anonymous.get(bad)
            assert r.status_code == 403, bad


async def test_delete_removes_the_row_and_the_stored_file(
    api: AsyncTestClient[Any], video_id: str, store: Store, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    key = await complete(export_id, DATA)
    r = await api.delete(f"/api/exports/{export_id}", headers=await csrf_headers(api))
    assert r.status_code == 204
    assert await store.size(key) is None
    assert (await api.get(f"/api/exports/{export_id}")).status_code == 404
    assert (await api.get(f"/api/videos/{video_id}")).status_code == 200


async def test_deleting_a_pending_export_cancels_it_aborts_its_job_and_tells_listeners(
    api: AsyncTestClient[Any], video_id: str, queue: RedisQueue, redis: Redis
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(export_channel(export_id))
    try:
        r = await api.delete(f"/api/exports/{export_id}", headers=await csrf_headers(api))
        assert r.status_code == 204
        raw = await _next_message(pubsub)
    finally:
        await pubsub.aclose()
    message = msgspec.json.decode(raw, type=ProgressMessage)
    assert (message.export_id, message.status, message.seq) == (export_id, "cancelled", 1)
    job = await queue.job(export_id)
    assert job is not None
    assert (job.status, job.error) == ("aborted", "cancelled")
    assert (await queue.info())["queued"] == 0
    assert (await api.get(f"/api/exports/{export_id}")).status_code == 404
    snapshot = await read_snapshot(redis, export_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.seq) == ("cancelled", 1)
    assert 0 < await redis.ttl(progress_key(export_id)) <= SNAPSHOT_TTL_S


async def test_a_late_worker_message_after_delete_cannot_restart_the_snapshot(
    api: AsyncTestClient[Any], video_id: str, redis: Redis, sql: Sql
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    user_id = (await api.get("/api/auth/me")).json()["id"]
    await sql("UPDATE exports SET status = 'processing', attempt = 1 WHERE id = :id", id=export_id)

    def rendering(percent: int) -> ProgressMessage:
        return ProgressMessage(
            export_id=export_id,
            user_id=user_id,
            seq=0,
            status="processing",
            phase="rendering",
            percent=percent,
        )

    assert await publish_progress(redis, rendering(40)) is not None
    r = await api.delete(f"/api/exports/{export_id}", headers=await csrf_headers(api))
    assert r.status_code == 204

    assert await publish_progress(redis, rendering(60)) is None
    snapshot = await read_snapshot(redis, export_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.seq, snapshot.percent) == ("cancelled", 2, 0)


async def _next_message(pubsub: Any, timeout_s: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.5)
        if message is not None:
            return message["data"]
    raise AssertionError("nothing was published")


async def _once(data: bytes) -> Any:
    yield data
