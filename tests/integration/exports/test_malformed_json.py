"""A JSON body the decoder cannot read is the client's mistake: 400 problem+json saying why, never 500."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.fixtures.app import csrf_headers

DEEP = b"[" * 100_000 + b"]" * 100_000  # msgspec raises RecursionError, not a DecodeError


@pytest.fixture(params=["/api/videos/{video_id}/export", "/api/auth/login", "/api/tokens"])
def json_endpoint(request: pytest.FixtureRequest) -> str:
    """JSON endpoints of the exports and accounts domains: the mapping is app-wide, not per handler."""
    if "{video_id}" in request.param:
        return request.param.format(video_id=request.getfixturevalue("video_id"))
    return request.param


async def post_bytes(c: AsyncTestClient[Any], path: str, body: bytes) -> Any:
    headers = {**await csrf_headers(c), "content-type": "application/json"}
    return await c.post(path, content=body, headers=headers)


async def test_a_100k_deep_array_is_400(api: AsyncTestClient[Any], json_endpoint: str) -> None:
    r = await post_bytes(api, json_endpoint, DEEP)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "JSON is malformed: nested too deeply"


async def test_invalid_utf8_is_400(api: AsyncTestClient[Any], json_endpoint: str) -> None:
    r = await post_bytes(api, json_endpoint, b'{"name": "\xff"}')
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "JSON is malformed: not valid UTF-8"
