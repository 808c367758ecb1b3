"""Video upload over the API, on both storage backends: streamed, hashed, probed, or rejected cleanly."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from gpu_worker.store import open_store
from tests.fixtures.app import csrf_headers


async def upload(
    c: AsyncTestClient[Any], path: Path, content_type: str = "video/mp4", name: str | None = None
) -> Any:
    files = {"file": (name or path.name, path.read_bytes(), content_type)}
    return await c.post("/api/videos", files=files, headers=await csrf_headers(c))


async def stored_keys(settings: Settings) -> list[str]:
    """Every object in the store, whichever backend it is."""
    storage = settings.core.storage
    if storage.backend == "local":
        root = storage.local_root
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    import boto3

    client = boto3.client("s3", endpoint_url=storage.endpoint_url, region_name=storage.region)
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=storage.bucket).get("Contents", []))


async def test_upload_probes_the_clip_exactly(app_client: AsyncTestClient[Any], clip: Path) -> None:
    r = await upload(app_client, clip)
    assert r.status_code == 201, r.text
    video = r.json()
    assert video["original_filename"] == "holiday clip.mp4"
    assert video["status"] == "ready"
    assert video["size_bytes"] == clip.stat().st_size
    assert video["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert (video["width"], video["height"], video["rotation"]) == (320, 180, 0)
    assert video["frame_rate"] == "25/1"
    assert video["frame_count"] == 50
    assert abs(video["duration"] - 2.0) < 0.05
    assert (video["video_codec"], video["pix_fmt"], video["bit_depth"]) == ("h264", "yuv420p", 8)
    assert (video["audio_codec"], video["audio_channels"], video["audio_rate"]) == ("aac", 2, 48000)
    assert video["audio_layout"] == "stereo"


async def test_the_stored_object_is_the_uploaded_bytes_under_a_server_made_key(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, clip: Path
) -> None:
    await upload(app_client, clip, name="../../etc/passwd.mp4")
    thumbnail, source = await stored_keys(any_store_settings)  # the upload and its list thumbnail
    assert thumbnail.startswith("thumbnails/")
    assert source.startswith("videos/")
    assert source.endswith(".mp4")
    assert "passwd" not in source
    async with open_store(any_store_settings.core.storage) as store:
        data = b"".join([chunk async for chunk in store.get_stream(source)])
    assert data == clip.read_bytes()


async def test_garbage_is_rejected_with_a_clear_message_and_nothing_stored(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, garbage: Path
) -> None:
    r = await upload(app_client, garbage)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"].startswith("not a usable video: ")
    assert await stored_keys(any_store_settings) == []
    assert (await app_client.get("/api/videos")).json()["total"] == 0


async def test_a_truncated_file_is_rejected_and_nothing_stored(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, truncated: Path
) -> None:
    r = await upload(app_client, truncated)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("not a usable video: ")
    assert await stored_keys(any_store_settings) == []


async def test_a_non_video_content_type_is_415(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, clip: Path
) -> None:
    r = await upload(app_client, clip, content_type="text/plain")
    assert r.status_code == 415
    assert r.json()["detail"] == "'text/plain' is not a video file type"
    assert await stored_keys(any_store_settings) == []


async def test_a_file_over_the_size_limit_is_413_and_nothing_stored(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, tmp_path: Path
) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (2 * 1024 * 1024 + 1))
    r = await upload(app_client, big)
    assert r.status_code == 413
    assert r.json()["detail"] == "the file is larger than the 2 MiB limit"
    assert await stored_keys(any_store_settings) == []
    assert list((any_store_settings.core.scratch_dir / "uploads").iterdir()) == []


async def test_a_body_without_the_file_field_is_400(app_client: AsyncTestClient[Any]) -> None:
    r = await app_client.post(
        "/api/videos", files={"other": ("a.mp4", b"x", "video/mp4")}, headers=await csrf_headers(app_client)
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "no file found in the 'file' field"


async def test_a_json_body_is_415(app_client: AsyncTestClient[Any]) -> None:
    r = await app_client.post("/api/videos", json={"file": "x"}, headers=await csrf_headers(app_client))
    assert r.status_code == 415


async def test_the_scratch_file_is_removed_after_a_successful_upload(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, clip: Path
) -> None:
    assert (await upload(app_client, clip)).status_code == 201
    assert list((any_store_settings.core.scratch_dir / "uploads").iterdir()) == []


async def test_anonymous_upload_is_refused(any_store_settings: Settings, clip: Path) -> None:
    from backend.server.asgi import create_app

    async with AsyncTestClient(app=create_app(any_store_settings)) as anon:
        r = await upload(anon, clip)
    assert r.status_code == 401
    assert await stored_keys(any_store_settings) == []
