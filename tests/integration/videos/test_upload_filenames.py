"""The uploaded file's name is only a display name: control and bidi characters never reach the pages
(an ESC or a U+202E could disguise "evil.exe" as another name), and a NUL byte is refused outright.

The bodies are written by hand: HTTP client libraries percent-encode control characters in names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from tests.fixtures.app import csrf_headers

BOUNDARY = "vexport-test-boundary"


async def upload_as(c: AsyncTestClient[Any], filename: str, path: Path) -> Any:
    """POST `path` with `filename` written raw (UTF-8) into the part's Content-Disposition."""
    body = (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    headers = {**await csrf_headers(c), "content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return await c.post("/api/videos", content=body, headers=headers)


async def test_a_nul_byte_in_the_filename_is_400_and_nothing_is_kept(
    owner: AsyncTestClient[Any], settings: Settings, clip: Path
) -> None:
    r = await upload_as(owner, "clip\x00.exe.mp4", clip)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "the filename contains a NUL byte"
    assert (await owner.get("/api/videos")).json()["total"] == 0
    assert not settings.core.storage.local_root.exists()


async def test_escape_and_right_to_left_override_are_stripped_from_the_name(
    owner: AsyncTestClient[Any], clip: Path
) -> None:
    r = await upload_as(owner, "\x1b[2Kholiday\u202e4pm.exe", clip)
    assert r.status_code == 201, r.text
    assert r.json()["original_filename"] == "[2Kholiday4pm.exe"


async def test_a_name_of_only_control_characters_becomes_video(
    owner: AsyncTestClient[Any], clip: Path
) -> None:
    r = await upload_as(owner, "\x1b\u202e\u2066\u200f", clip)
    assert r.status_code == 201, r.text
    assert r.json()["original_filename"] == "video"
