"""Fixtures for integration tests that need the app on a real socket (see `tests.fixtures.live`).

A module that asks for `live` or `owner` says which settings to serve with a `live_settings` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.live import Account, account, serve_app


@pytest.fixture
async def live(live_settings: Settings) -> AsyncIterator[str]:
    """`host:port` of the app on `live_settings`, served by uvicorn on this test's event loop."""
    async with serve_app(create_app(live_settings)) as address:
        yield address


@pytest.fixture
async def owner(live: str) -> AsyncIterator[Account]:
    """owner@example.com, registered on the live server, with an API token."""
    acc = await account(live, "owner@example.com")
    yield acc
    await acc.http.aclose()
