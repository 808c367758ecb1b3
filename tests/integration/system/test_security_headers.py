"""Every HTTP response carries the browser-side defences: a strict Content-Security-Policy (no inline
script or style, no framing), X-Frame-Options for older browsers, and nosniff, on pages and the API
alike, on errors too, whether a handler, a middleware or the router answered."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.store import StoreSettings
from tests.fixtures.app import register

CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/login", 200),  # a page
        ("GET", "/health", 200),  # JSON
        ("GET", "/static/app.css", 200),  # a static file
        ("GET", "/api/videos", 401),  # an error a dependency raised
        ("GET", "/no/such/page", 404),  # the router's answer
        ("POST", "/api/tokens", 403),  # a middleware's refusal (no CSRF token)
    ],
)
async def test_every_response_carries_the_security_headers(
    client: AsyncTestClient[Any], method: str, path: str, status: int
) -> None:
    r = await client.request(method, path)
    assert r.status_code == status
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_a_signed_in_page_carries_them_once(client: AsyncTestClient[Any]) -> None:
    await register(client, "owner@example.com")
    r = await client.get("/videos")
    assert r.status_code == 200
    assert r.headers.get_list("content-security-policy") == [CSP]


async def test_on_s3_the_player_may_load_from_the_public_endpoint(
    settings: Settings, s3_store_settings: StoreSettings
) -> None:
    """The player's source redirects to a presigned URL on the S3 server browsers reach."""
    storage = dataclasses.replace(
        s3_store_settings, public_endpoint_url="http://media.example.com:9000", path_style=True
    )
    on_s3 = dataclasses.replace(settings, core=dataclasses.replace(settings.core, storage=storage))
    async with AsyncTestClient(app=create_app(on_s3)) as c:
        r = await c.get("/health")
    assert "; media-src 'self' http://media.example.com:9000; " in r.headers["content-security-policy"]
