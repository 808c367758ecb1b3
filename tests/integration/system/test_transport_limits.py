"""A client cannot hold the server with slow or oversized requests: heads and bodies have deadlines,
a declared body over the limit is refused before it is read, and connections are bounded."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from backend.server.limits import server_limits
from gpu_worker.settings import MiB
from gpu_worker.store import StoreSettings
from tests.fixtures.app import make_settings
from tests.fixtures.live import account

DEADLINE_S = 0.5
MARGIN_S = 5.0


@pytest.fixture
def limited(
    tmp_path: Path, database_url: str, redis_url: str, local_store_settings: StoreSettings, db_engine: object
) -> Settings:
    return make_settings(
        tmp_path,
        database_url,
        redis_url,
        local_store_settings,
        max_upload_bytes=2 * MiB,
        header_timeout_s=DEADLINE_S,
        body_timeout_s=DEADLINE_S,
        max_connections=3,
    )


@pytest.fixture
async def server(limited: Settings) -> AsyncIterator[tuple[str, int]]:
    """The app behind uvicorn with the options `vexport serve` gives it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(limited), lifespan="on", log_level="warning", **server_limits(limited))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    yield sock.getsockname()[:2]
    server.should_exit = True
    await task
    sock.close()


async def exchange(address: tuple[str, int], data: bytes) -> tuple[bytes, float]:
    """Send `data`, then read until the server closes; the answer and how long that took."""
    started = asyncio.get_running_loop().time()
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), MARGIN_S)
    elapsed = asyncio.get_running_loop().time() - started
    writer.close()
    return answer, elapsed


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_a_request_head_that_never_ends_gets_408_and_the_connection_closes(
    server: tuple[str, int],
) -> None:
    answer, elapsed = await exchange(server, b"GET /ready HTTP/1.1\r\nhost: x\r\nx-slow: ")

    assert status_and_body(answer)[0] == 408
    assert DEADLINE_S <= elapsed < MARGIN_S


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_deadline(
    server: tuple[str, int],
) -> None:
    answer, elapsed = await exchange(server, b"")

    assert status_and_body(answer)[0] == 408
    assert DEADLINE_S <= elapsed < MARGIN_S


async def test_a_body_that_stalls_gets_408_problem_json(server: tuple[str, int]) -> None:
    owner = await account(f"{server[0]}:{server[1]}", "slow@example.com")
    await owner.http.aclose()
    head = (
        b"POST /api/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {owner.token}\r\ncontent-length: 100\r\n\r\n".encode()
    )

    answer, elapsed = await exchange(server, head + b'{"name": ')

    status, body = status_and_body(answer)
    assert status == 408
    assert json.loads(body)["detail"] == f"the request body stalled for {DEADLINE_S:g} s"
    assert elapsed < MARGIN_S


async def test_an_upload_declaring_more_than_the_limit_is_refused_before_its_body(
    server: tuple[str, int],
) -> None:
    declared = 10 * 1024 * MiB
    head = (
        b"POST /api/videos HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=b\r\n"
        + f"content-length: {declared}\r\nconnection: close\r\n\r\n".encode()
    )

    answer, elapsed = await exchange(server, head)

    status, body = status_and_body(answer)
    assert status == 413
    assert json.loads(body)["detail"] == (
        f"the request body declares {declared} bytes; at most {2 * MiB + MiB} are accepted here"
    )
    assert elapsed < DEADLINE_S  # at once, not after waiting for the body


async def test_a_json_body_declaring_more_than_the_json_limit_is_refused_before_its_body(
    server: tuple[str, int], limited: Settings
) -> None:
    declared = limited.max_json_body_bytes + 1
    head = (
        b"POST /api/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {declared}\r\nconnection: close\r\n\r\n".encode()
    )

    answer, _ = await exchange(server, head)

    assert status_and_body(answer)[0] == 413


async def test_connections_beyond_the_limit_get_503(server: tuple[str, int]) -> None:
    held = [await asyncio.open_connection(*server) for _ in range(3)]
    try:
        answer, _ = await exchange(server, b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    finally:
        for _, writer in held:
            writer.close()

    assert status_and_body(answer)[0] == 503
