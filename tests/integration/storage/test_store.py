"""One behaviour, two backends: every test taking `store` runs against a local directory and moto's S3."""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from gpu_worker.store import (
    MIN_PART_SIZE,
    InvalidKey,
    LocalStore,
    ObjectNotFound,
    S3Store,
    Store,
    StoreError,
    StoreSettings,
    content_disposition,
    new_key,
    open_store,
)

MIB = 1024 * 1024
OWNER = uuid.UUID("0190a6c4-1c2d-7e3f-8a4b-5c6d7e8f9a0b")


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, size: int = 777_777) -> AsyncIterator[bytes]:
    """Odd-sized chunks, so part boundaries never line up with what the caller hands in."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store: Store, key: str, start: int | None = None, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.get_stream(key, start, end)])


def a_key(name: str = "clip.mp4") -> str:
    return f"tests/{uuid.uuid4().hex}/{name}"


async def test_round_trip_small(store: Store) -> None:
    key = a_key()
    assert await store.put_stream(key, chunked(b"hello world", 3), content_type="video/mp4") == 11
    assert await read_all(store, key) == b"hello world"
    assert await store.size(key) == 11


async def test_empty_object(store: Store) -> None:
    key = a_key()
    assert await store.put_stream(key, chunked(b""), content_type="video/mp4") == 0
    assert await store.size(key) == 0
    assert await read_all(store, key) == b""


async def test_multipart_object_round_trips(store: Store) -> None:
    data = payload(12 * MIB)
    key = a_key()
    assert await store.put_stream(key, chunked(data), content_type="video/mp4") == len(data)
    assert await store.size(key) == len(data)
    assert await read_all(store, key) == data


async def test_s3_large_object_is_uploaded_in_parts(
    s3_store: S3Store, s3_store_settings: StoreSettings, s3_admin: Any
) -> None:
    key = a_key()
    await s3_store.put_stream(key, chunked(payload(12 * MIB)), content_type="video/mp4")
    head = s3_admin.head_object(Bucket=s3_store_settings.bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # 5 MiB + 5 MiB + 2 MiB
    assert head["ContentType"] == "video/mp4"


async def test_s3_when_required_checksums_still_round_trip(s3_store_settings: StoreSettings) -> None:
    """The mode for S3-compatible stores that reject the newer default CRC32 headers."""
    data = payload(11 * MIB, seed=5)
    key = a_key()
    async with open_store(replace(s3_store_settings, checksum_mode="when_required")) as store:
        await store.put_stream(key, chunked(data), content_type="video/mp4")
        assert await read_all(store, key) == data
        assert await read_all(store, key, 5 * MIB - 1, 5 * MIB + 1) == data[5 * MIB - 1 : 5 * MIB + 1]


async def test_overwrite_replaces_the_object(store: Store) -> None:
    key = a_key()
    await store.put_stream(key, chunked(b"first version"), content_type="video/mp4")
    await store.put_stream(key, chunked(b"second"), content_type="video/mp4")
    assert await read_all(store, key) == b"second"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 10),
        (10, 20),
        (None, 5),
        (2_999_990, None),
        (MIB - 3, 2 * MIB + 7),  # crosses read-chunk boundaries
        (2_999_990, 4_000_000),  # end past the object: what exists
        (3_000_000, None),  # starts at the end: empty
        (5_000_000, 6_000_000),  # starts past the end: empty
        (7, 7),  # empty range
    ],
)
async def test_ranged_get_returns_exact_bytes(store: Store, start: int | None, end: int | None) -> None:
    data = payload(3_000_000)
    key = a_key()
    await store.put_stream(key, chunked(data), content_type="video/mp4")
    assert await read_all(store, key, start, end) == data[start:end]


async def test_negative_range_is_refused(store: Store) -> None:
    key = a_key()
    await store.put_stream(key, chunked(b"abc"), content_type="video/mp4")
    with pytest.raises(ValueError, match="non-negative"):
        await read_all(store, key, -1, None)


@pytest.mark.parametrize("fail_after", [1000, 6 * MIB], ids=["before-first-part", "after-first-part"])
async def test_failure_mid_stream_leaves_nothing(
    store: Store, leftovers: Callable[[], list[str]], fail_after: int
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunked(payload(fail_after), MIB):
            yield chunk
        raise RuntimeError("source went away")

    key = a_key()
    with pytest.raises(RuntimeError, match="source went away"):
        await store.put_stream(key, broken(), content_type="video/mp4")
    assert await store.size(key) is None
    assert leftovers() == []


async def test_cancelled_upload_leaves_nothing(store: Store, leftovers: Callable[[], list[str]]) -> None:
    sent_a_part = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in chunked(payload(6 * MIB), MIB):
            yield chunk
        sent_a_part.set()
        await asyncio.Event().wait()  # never comes
        yield b""

    key = a_key()
    task = asyncio.create_task(store.put_stream(key, stalls(), content_type="video/mp4"))
    await asyncio.wait_for(sent_a_part.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.size(key) is None
    assert leftovers() == []


def _open_uploads(s3_admin: Any, settings: StoreSettings) -> list[str]:
    return [u["Key"] for u in s3_admin.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", [])]


async def test_s3_cancel_while_the_upload_is_being_created_leaves_nothing(
    s3_store: S3Store, s3_store_settings: StoreSettings, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 has created the upload but its answer (the id needed to abort it) is still on the way."""
    client = await s3_store._s3()
    create = client.create_multipart_upload
    created = asyncio.Event()

    async def slow_answer(**params: Any) -> Any:
        answer = await create(**params)
        created.set()
        await asyncio.sleep(0.2)
        return answer

    monkeypatch.setattr(client, "create_multipart_upload", slow_answer)
    key = a_key()
    task = asyncio.create_task(s3_store.put_stream(key, chunked(payload(6 * MIB), MIB)))
    await asyncio.wait_for(created.wait(), timeout=30)
    assert _open_uploads(s3_admin, s3_store_settings) == [key]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _open_uploads(s3_admin, s3_store_settings) == []


async def test_s3_aclose_waits_for_an_abort_still_running(
    s3_store_settings: StoreSettings, s3_admin: Any
) -> None:
    store = S3Store(s3_store_settings)
    client = await store._s3()
    abort = client.abort_multipart_upload
    aborting = asyncio.Event()

    async def slow_abort(**params: Any) -> Any:
        aborting.set()
        await asyncio.sleep(0.2)
        return await abort(**params)

    client.abort_multipart_upload = slow_abort
    sent_a_part = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        async for chunk in chunked(payload(6 * MIB), MIB):
            yield chunk
        sent_a_part.set()
        await asyncio.Event().wait()  # never comes
        yield b""

    task = asyncio.create_task(store.put_stream(a_key(), stalls()))
    await asyncio.wait_for(sent_a_part.wait(), timeout=30)
    task.cancel()
    await aborting.wait()
    task.cancel()  # a second cancel (e.g. shutdown) leaves the shielded abort running
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.aclose()  # must not pull the client from under the abort
    assert _open_uploads(s3_admin, s3_store_settings) == []


async def test_open_writer_commits_on_clean_exit(store: Store) -> None:
    data = payload(11 * MIB, seed=2)
    key = a_key("clips.zip")
    async with store.open_writer(key, "application/zip") as writer:
        for i in range(0, len(data), 300_001):
            await writer.write(data[i : i + 300_001])
    assert writer.written == len(data)
    assert await read_all(store, key) == data


async def test_open_writer_aborts_when_the_block_raises(
    store: Store, leftovers: Callable[[], list[str]]
) -> None:
    key = a_key("clips.zip")

    async def write_then_fail() -> None:
        async with store.open_writer(key, "application/zip") as writer:
            await writer.write(payload(6 * MIB))
            raise KeyError("zip entry failed")

    with pytest.raises(KeyError):
        await write_then_fail()
    assert await store.size(key) is None
    assert leftovers() == []


async def test_put_file_and_download_to(store: Store, tmp_path: Path) -> None:
    data = payload(6 * MIB + 123, seed=3)
    source = tmp_path / "in.mp4"
    source.write_bytes(data)
    key = a_key()
    assert await store.put_file(key, source, content_type="video/mp4") == len(data)
    target = tmp_path / "out" / "copy.mp4"
    assert await store.download_to(key, target) == len(data)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.mp4"]


async def test_missing_object(store: Store, tmp_path: Path) -> None:
    key = a_key()
    assert await store.size(key) is None
    with pytest.raises(ObjectNotFound):
        await read_all(store, key)
    downloads = tmp_path / "downloads"
    with pytest.raises(ObjectNotFound):
        await store.download_to(key, downloads / "never.mp4")
    assert list(downloads.iterdir()) == []  # neither the target nor a temp file


async def test_delete_is_idempotent(store: Store) -> None:
    key = a_key()
    await store.put_stream(key, chunked(b"x"), content_type="video/mp4")
    await store.delete(key)
    assert await store.size(key) is None
    await store.delete(key)
    await store.delete(a_key())


async def test_delete_prefix_removes_only_that_directory(store: Store) -> None:
    root = f"exports/{uuid.uuid4().hex}"
    doomed = [f"{root}/x/1.mp4", f"{root}/x/2.mp4", f"{root}/x/sub/3.mp4"]
    kept = [f"{root}/y/1.mp4", f"{root}/x-other.mp4"]
    for key in doomed + kept:
        await store.put_stream(key, chunked(key.encode()), content_type="video/mp4")
    await store.delete_prefix(f"{root}/x/")
    for key in doomed:
        assert await store.size(key) is None
    for key in kept:
        assert await read_all(store, key) == key.encode()
    await store.delete_prefix(f"{root}/x/")  # again: nothing left, no error
    await store.delete_prefix(f"{root}/nothing-here/")


@pytest.mark.parametrize(
    "prefix", ["", "/", "exports", "exports/x", "../", "exports/../", "/abs/", "a//", "a\\b/"]
)
async def test_delete_prefix_refuses_bad_prefixes(store: Store, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        await store.delete_prefix(prefix)


BAD_KEYS = [
    "",
    "../escape.mp4",
    "videos/../../escape.mp4",
    "videos/./x.mp4",
    "/etc/passwd",
    "videos\\..\\x.mp4",
    "videos//x.mp4",
    "videos/",
    ".hidden",
    "videos/x.mp4\x00",
    "videos/x\n.mp4",
    "videos/ x.mp4",
    "a" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_key_validation_rejects_traversal_and_odd_keys(store: Store, key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidKey):
        await store.put_stream(key, chunked(b"x"), content_type="video/mp4")
    with pytest.raises(InvalidKey):
        await read_all(store, key)
    with pytest.raises(InvalidKey):
        await store.size(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)
    with pytest.raises(InvalidKey):
        await store.download_url(key, filename="x.mp4")
    with pytest.raises(InvalidKey):
        await store.download_to(key, tmp_path / "x.mp4")


async def test_local_store_stays_inside_its_root_through_symlinks(
    local_store: LocalStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local_store.root.mkdir(parents=True, exist_ok=True)
    (local_store.root / "videos").symlink_to(outside)
    with pytest.raises(InvalidKey):
        await local_store.put_stream("videos/x.mp4", chunked(b"x"), content_type="video/mp4")
    assert list(outside.iterdir()) == []


def test_new_key_is_generated_never_from_the_users_filename() -> None:
    filename = "My Holiday Ünïcode; rm -rf.MP4"
    key = new_key("videos", OWNER, Path(filename).suffix)
    assert re.fullmatch(rf"videos/{OWNER}/[0-9a-f]{{32}}\.mp4", key)
    assert "Holiday" not in key
    assert key != new_key("videos", OWNER, ".mp4")


@pytest.mark.parametrize(
    ("suffix", "ext"),
    [
        (".mp4", "mp4"),
        ("MOV", "mov"),
        ("zip", "zip"),
        ("", "bin"),
        (".exe", "bin"),
        ("../../etc", "bin"),
        ("mp4/x", "bin"),
    ],
)
def test_new_key_takes_suffixes_from_the_allow_list(suffix: str, ext: str) -> None:
    assert new_key("exports", 42, suffix).endswith(f".{ext}")


@pytest.mark.parametrize(
    ("kind", "owner"), [("../videos", OWNER), ("videos", "../x"), ("Videos/", OWNER), ("", 1)]
)
def test_new_key_refuses_odd_kinds_and_owners(kind: str, owner: object) -> None:
    with pytest.raises(InvalidKey):
        new_key(kind, owner, "mp4")


@pytest.mark.parametrize(
    ("filename", "fallback", "encoded"),
    [
        ("export.mp4", "export.mp4", "export.mp4"),
        (
            "Café été \u2013 final.mp4",
            "Cafe ete _ final.mp4",
            "Caf%C3%A9%20%C3%A9t%C3%A9%20%E2%80%93%20final.mp4",
        ),
        ('evil";\r\nX-Injected: 1.mp4', "evil__X-Injected_ 1.mp4", "evil%22%3BX-Injected%3A%201.mp4"),
        ("../../etc/passwd", "passwd", "passwd"),
        ("C:\\Users\\me\\clip.mov", "clip.mov", "clip.mov"),
        ("", "download", "download"),
        ("日本語.mp4", "___.mp4", "%E6%97%A5%E6%9C%AC%E8%AA%9E.mp4"),
    ],
)
def test_content_disposition_is_rfc6266_and_sanitized(filename: str, fallback: str, encoded: str) -> None:
    assert content_disposition(filename) == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


async def test_check_passes(store: Store) -> None:
    await store.check()


async def test_s3_check_fails_for_a_missing_bucket(s3_store_settings: StoreSettings) -> None:
    settings = StoreSettings(
        backend="s3",
        bucket=f"missing-{uuid.uuid4().hex}",
        endpoint_url=s3_store_settings.endpoint_url,
        path_style=True,
    )
    async with open_store(settings) as store:
        with pytest.raises(StoreError, match="not usable"):
            await store.check()


async def test_local_check_fails_when_root_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    async with open_store(StoreSettings(local_root=tmp_path / "file" / "root")) as store:
        with pytest.raises(StoreError, match="not writable"):
            await store.check()


async def test_s3_download_url_serves_the_bytes_as_an_attachment(s3_store: S3Store) -> None:
    data = payload(100_000, seed=4)
    key = a_key()
    await s3_store.put_stream(key, chunked(data), content_type="application/octet-stream")
    url = await s3_store.download_url(key, filename="Café cut.mp4", expires_s=60)
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-disposition"] == content_disposition("Café cut.mp4")
    assert response.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize("expires_s", [8 * 24 * 3600, 7 * 24 * 3600 + 1, 0, -1])
async def test_download_url_expiry_is_bounded_to_seven_days(store: Store, expires_s: int) -> None:
    with pytest.raises(ValueError, match=r"expires_s must be in 1\.\.604800"):
        await store.download_url(a_key(), filename="x.mp4", expires_s=expires_s)


@pytest.mark.parametrize("expires_s", [1, 7 * 24 * 3600])
async def test_download_url_expiry_limits_are_accepted(store: Store, expires_s: int) -> None:
    assert await store.download_url(a_key(), filename="x.mp4", expires_s=expires_s)


def split_local_url(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    assert parts.path.startswith("/files/")
    return unquote(parts.path.removeprefix("/files/")), {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_local_download_url_verifies(local_store: LocalStore) -> None:
    key = a_key()
    await local_store.put_stream(key, chunked(b"data"), content_type="video/mp4")
    url = await local_store.download_url(key, filename="Café cut.mp4")
    path_key, query = split_local_url(url)
    assert path_key == key
    assert query["name"] == "Café cut.mp4"
    assert int(query["exp"]) - time.time() == pytest.approx(300, abs=5)
    assert local_store.verify_download(path_key, query["exp"], query["name"], query["sig"])
    assert local_store.local_path(path_key).read_bytes() == b"data"


async def test_local_download_url_rejects_tampering_and_expiry(local_store: LocalStore) -> None:
    key = a_key()
    _, query = split_local_url(await local_store.download_url(key, filename="a.mp4"))
    exp, name, sig = query["exp"], query["name"], query["sig"]
    assert local_store.verify_download(key, exp, name, sig)
    assert not local_store.verify_download(key, exp, name, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    assert not local_store.verify_download(key, exp, "b.mp4", sig)
    assert not local_store.verify_download(a_key(), exp, name, sig)
    assert not local_store.verify_download(key, str(int(exp) + 1), name, sig)
    assert not local_store.verify_download(key, "soon", name, sig)
    assert not local_store.verify_download(key, exp, name, "é" * len(sig))
    assert not local_store.verify_download("../x", exp, name, sig)

    other = LocalStore(StoreSettings(local_root=local_store.root, signing_secret=b"another secret"))
    assert not other.verify_download(key, exp, name, sig)


async def test_local_download_url_expires_after_its_lifetime(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, now = a_key(), 1_800_000_000.0
    clock = SimpleNamespace(time=lambda: now)
    monkeypatch.setattr("gpu_worker.store.local.time", clock)
    _, query = split_local_url(await local_store.download_url(key, filename="a.mp4", expires_s=60))
    assert query["exp"] == str(int(now) + 60)
    link = (key, query["exp"], query["name"], query["sig"])
    clock.time = lambda: now + 60
    assert local_store.verify_download(*link)
    clock.time = lambda: now + 61
    assert not local_store.verify_download(*link)


async def test_local_download_url_needs_a_secret(tmp_path: Path) -> None:
    store = LocalStore(StoreSettings(local_root=tmp_path))
    with pytest.raises(StoreError, match="signing_secret"):
        await store.download_url(a_key(), filename="a.mp4")
    assert not store.verify_download(a_key(), str(int(time.time()) + 60), "a.mp4", "00")


def test_settings_refuse_parts_below_the_s3_minimum() -> None:
    with pytest.raises(ValueError, match="part_size"):
        StoreSettings(part_size=MIN_PART_SIZE - 1)
    with pytest.raises(ValueError, match="bucket"):
        StoreSettings(backend="s3")


def test_settings_repr_hides_secrets() -> None:
    text = repr(StoreSettings(secret_access_key="hunter2", signing_secret=b"s3cr3t"))
    assert "hunter2" not in text
    assert "s3cr3t" not in text
