"""Errors app-wide: the exception's own headers reach the response, on the API and on pages alike."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient


@pytest.mark.parametrize(
    ("path", "allowed", "content_type"),
    [
        ("/api/videos", {"GET", "POST", "OPTIONS"}, "application/problem+json"),
        ("/login", {"GET", "POST", "OPTIONS"}, "text/html; charset=utf-8"),
    ],
)
async def test_method_not_allowed_keeps_its_allow_header(
    client: AsyncTestClient[Any], path: str, allowed: set[str], content_type: str
) -> None:
    r = await client.put(path)
    assert r.status_code == 405
    assert r.headers["content-type"] == content_type
    assert set(r.headers["allow"].split(", ")) == allowed


async def test_method_not_allowed_on_the_api_is_problem_json(client: AsyncTestClient[Any]) -> None:
    r = await client.put("/api/videos")
    assert r.json() == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "Method Not Allowed",
    }
