"""Progress sockets during a Redis outage close with 1013 "try again later", the code that tells a
client (and the pages' htmx ws extension) to reconnect after a pause, instead of staying open and
silent or closing with 4500, after which the pages never reconnected.

The app runs on a Redis of the test's own (tests.fixtures.redis_server), killed mid-test; a brief
loss within the fan-out's OUTAGE_GRACE_S is survived (test_ws.py, test_fanout.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.live import Account, account, serve_app
from tests.fixtures.redis_server import RedisServer

TRY_AGAIN_LATER = (1013, "live progress unavailable (Redis); try again later")
GRACE_S = 1.0
"""REDIS_OUTAGE_GRACE_S here: what is tested is the close after the grace, not its length."""
CLOSE_WITHIN_S = GRACE_S + 3.0


@pytest.fixture
async def live(export_settings: Settings, redis_server: RedisServer) -> AsyncIterator[str]:
    """The app on `redis_server`, served on a loopback port."""
    core = dataclasses.replace(export_settings.core, redis_url=redis_server.url)
    settings = dataclasses.replace(export_settings, core=core, redis_outage_grace_s=GRACE_S)
    async with serve_app(create_app(settings)) as address:
        yield address


@pytest.fixture
async def owner(live: str) -> AsyncIterator[Account]:
    acc = await account(live, "owner@example.com")
    yield acc
    await acc.http.aclose()


async def close_of(ws: ClientConnection) -> tuple[int, str]:
    """The code and reason the server closes with, skipping whatever it sent before."""

    async def read_all() -> None:
        while True:
            await ws.recv()

    async with asyncio.timeout(CLOSE_WITHIN_S):
        with pytest.raises(ConnectionClosed) as closed:
            await read_all()
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


@pytest.mark.parametrize("path", ["/ws/exports", "/ws/ui/exports"])
async def test_an_open_socket_closes_with_try_again_later_once_redis_stays_away(
    live: str, owner: Account, redis_server: RedisServer, path: str
) -> None:
    async with connect(f"ws://{live}{path}?token={owner.token}") as ws:
        await asyncio.sleep(0.2)  # subscribed and caught up
        redis_server.kill()

        assert await close_of(ws) == TRY_AGAIN_LATER


@pytest.mark.parametrize("path", ["/ws/exports", "/ws/ui/exports", "/ws/exports/{export_id}"])
async def test_a_socket_opened_during_an_outage_closes_with_try_again_later(
    live: str, owner: Account, redis_server: RedisServer, path: str
) -> None:
    redis_server.kill()
    path = path.format(export_id="0193b1c2-0000-7000-8000-000000000000")

    async with connect(f"ws://{live}{path}?token={owner.token}") as ws:
        assert await close_of(ws) == TRY_AGAIN_LATER


async def test_a_browser_socket_whose_session_cannot_be_read_closes_with_try_again_later(
    live: str, owner: Account, redis_server: RedisServer
) -> None:
    redis_server.kill()
    headers = {"cookie": owner.cookie, "origin": f"http://{live}"}

    async with connect(f"ws://{live}/ws/ui/exports", additional_headers=headers) as ws:
        assert await close_of(ws) == TRY_AGAIN_LATER
