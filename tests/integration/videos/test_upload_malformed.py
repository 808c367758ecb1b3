"""A malformed multipart upload is the client's mistake: 400 problem+json naming what is wrong, never 500.

The bodies are written by hand, since a well-behaved client library cannot produce them.
"""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.fixtures.app import csrf_headers

BOUNDARY = "vexport-test-boundary"


def form(part_headers: bytes, boundary: str = BOUNDARY) -> bytes:
    """One `file` part with `part_headers` after its Content-Disposition, then a few bytes of data."""
    return (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        + part_headers
        + b"Content-Type: video/mp4\r\n\r\nnot a video\r\n"
        + f"--{boundary}--\r\n".encode()
    )


async def post_raw(c: AsyncTestClient[Any], body: bytes, boundary: str = BOUNDARY) -> Any:
    headers = {**await csrf_headers(c), "content-type": f"multipart/form-data; boundary={boundary}"}
    return await c.post("/api/videos", content=body, headers=headers)


async def test_a_20_kb_part_header_is_400(owner: AsyncTestClient[Any]) -> None:
    r = await post_raw(owner, form(b"X-Padding: " + b"a" * 20_000 + b"\r\n"))
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "malformed multipart body: Maximum header size exceeded"


async def test_an_invalid_byte_in_a_part_header_name_is_400(owner: AsyncTestClient[Any]) -> None:
    body = form(b"X-Bad\x01Name: 1\r\n")
    offset = body.index(b"\x01")
    r = await post_raw(owner, body)
    assert r.status_code == 400
    assert r.json()["detail"] == f"malformed multipart body: Found invalid character 1 in header at {offset}"


async def test_a_5000_character_boundary_is_400(owner: AsyncTestClient[Any]) -> None:
    boundary = "b" * 5000
    r = await post_raw(owner, form(b"", boundary), boundary)
    assert r.status_code == 400
    assert r.json()["detail"] == "malformed multipart body: Boundary length 5000 exceeds maximum of 256"


async def test_a_body_that_is_not_multipart_at_all_is_400(owner: AsyncTestClient[Any]) -> None:
    r = await post_raw(owner, b"this is not a multipart body")
    assert r.status_code == 400
    detail = "malformed multipart body: Expected boundary character 45, got 116 at index 2"
    assert r.json()["detail"] == detail
