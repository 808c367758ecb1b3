"""Revocations and log-outs reach every API process at once (backend.lib.revocations), however long
a process would otherwise remember a token: here two live servers share Postgres and Redis, like two API
processes behind a load balancer, and remember a resolved token for a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect

from backend.lib.revocations import CHANNEL, Revocation, Revocations, announce, client_name
from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.contract import ExportStatus, ProgressMessage
from gpu_worker.progress import publish_progress
from tests.fixtures.app import csrf_headers, run_vexport
from tests.fixtures.live import Account, account, free_port, recv, rest_until_closed, serve_app

REMEMBERED_S = 60.0
"""Far longer than any test here waits: a refusal can only come from the revocation channel."""
APPLIED_WITHIN_S = 3.0


@dataclass(frozen=True)
class Process:
    app: Litestar
    http: httpx.AsyncClient

    @property
    def revocations(self) -> Revocations:
        revocations: Revocations = self.app.state.revocations
        return revocations


@asynccontextmanager
async def api_process(settings: Settings) -> AsyncIterator[tuple[Process, str]]:
    """One API process, served live, its revocation listener subscribed."""
    app = create_app(dataclasses.replace(settings, token_cache_s=REMEMBERED_S))
    async with serve_app(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        process = Process(app, http)
        await asyncio.wait_for(process.revocations.listening.wait(), APPLIED_WITHIN_S)
        yield process, address


@pytest.fixture
async def first(settings: Settings) -> AsyncIterator[tuple[Process, str]]:
    async with api_process(settings) as served:
        yield served


@pytest.fixture
async def second(settings: Settings) -> AsyncIterator[tuple[Process, str]]:
    async with api_process(settings) as served:
        yield served


@pytest.fixture
async def user(first: tuple[Process, str]) -> AsyncIterator[Account]:
    """Logged in on the first process, with an API token."""
    acc = await account(first[1], "revoker@example.com")
    yield acc
    await acc.http.aclose()


async def remembered(process: Process, acc: Account, path: str = "/api/auth/me") -> int:
    """Use the token on `process` once, so that process remembers it; the status it answered."""
    r = await process.http.get(path, headers=bearer(acc))
    assert len(process.revocations.cache) == 1
    return r.status_code


def bearer(acc: Account) -> dict[str, str]:
    return {"authorization": f"Bearer {acc.token}"}


async def answers_within(process: Process, acc: Account, status: int, path: str = "/api/auth/me") -> float:
    """Seconds until `process` answers `status` to the token on `path` (fails after APPLIED_WITHIN_S)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (r := await process.http.get(path, headers=bearer(acc))).status_code != status:
        assert loop.time() - started < APPLIED_WITHIN_S, f"still {r.status_code} after {APPLIED_WITHIN_S} s"
        await asyncio.sleep(0.02)
    return loop.time() - started


async def token_id(acc: Account) -> str:
    listed = (await acc.http.get("/api/tokens")).json()
    assert len(listed) == 1
    return str(listed[0]["id"])


async def revoke(acc: Account) -> None:
    r = await acc.http.delete(f"/api/tokens/{await token_id(acc)}", headers=await csrf_headers(acc.http))
    assert r.status_code == 204


async def test_a_token_revoked_on_one_process_is_refused_by_another_that_remembered_it(
    second: tuple[Process, str], user: Account
) -> None:
    process, _ = second
    assert await remembered(process, user) == 200
    await revoke(user)
    await answers_within(process, user, 401)
    assert len(process.revocations.cache) == 0


async def test_a_websocket_the_token_opened_on_another_process_closes_with_4401_when_it_is_revoked(
    second: tuple[Process, str], user: Account
) -> None:
    _, address = second
    async with connect(f"ws://{address}/ws/exports?token={user.token}") as ws:
        await revoke(user)
        assert await rest_until_closed(ws) == ([], 4401)
        assert ws.close_reason == "API token revoked"


async def test_a_revocation_made_while_the_channel_was_down_is_not_missed(
    second: tuple[Process, str], user: Account, redis: Redis, db_engine: AsyncEngine
) -> None:
    process, _ = second
    assert await remembered(process, user) == 200
    async with db_engine.begin() as conn:  # not announced: as if Redis had lost the message
        await conn.execute(text("UPDATE api_tokens SET revoked_at = now()"))
    ours = [c["id"] for c in await redis.client_list() if c.get("name") == client_name()]
    for id_ in ours:
        await redis.client_kill_filter(_id=id_)
    await answers_within(process, user, 401)
    await asyncio.wait_for(process.revocations.listening.wait(), APPLIED_WITHIN_S)


async def test_a_malformed_announcement_is_dropped_and_the_next_one_still_applies(
    second: tuple[Process, str], user: Account, redis: Redis
) -> None:
    process, _ = second
    assert await remembered(process, user) == 200
    for junk in (b'{"token_id": "not a uuid"}', b"\xff not json", b"[]"):
        await redis.publish(CHANNEL, junk)
    await revoke(user)
    await answers_within(process, user, 401)


async def test_taking_the_operator_role_away_applies_at_once_to_a_remembered_token(
    second: tuple[Process, str], user: Account, settings: Settings
) -> None:
    process, _ = second
    await asyncio.to_thread(run_vexport, settings, "grant-operator", "revoker@example.com")
    assert await remembered(process, user, "/api/workers") == 200
    await asyncio.to_thread(run_vexport, settings, "grant-operator", "--revoke", "revoker@example.com")
    await answers_within(process, user, 404, "/api/workers")


async def test_announcing_to_a_redis_that_is_not_there_logs_it_and_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    revoked = Revocation(token_id=uuid.UUID(int=7))
    try:
        await announce(unreachable, revoked)
    finally:
        await unreachable.aclose()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"could not announce {revoked}"]


async def log_out(acc: Account, path: str) -> None:
    r = await acc.http.post(path, headers=await csrf_headers(acc.http))
    assert r.status_code in (204, 303), r.text


@pytest.mark.parametrize(
    ("socket_path", "logout_path"), [("/ws/exports", "/api/auth/logout"), ("/ws/ui/exports", "/logout")]
)
async def test_logging_out_on_one_process_closes_the_sessions_websockets_on_another(
    second: tuple[Process, str], user: Account, socket_path: str, logout_path: str
) -> None:
    _, address = second
    headers = {"Cookie": user.cookie, "Origin": f"http://{address}"}
    async with connect(f"ws://{address}{socket_path}", additional_headers=headers) as ws:
        await log_out(user, logout_path)
        assert await rest_until_closed(ws) == ([], 4401)
        assert ws.close_reason == "logged out"


async def test_logging_out_leaves_the_same_users_token_sockets_open(
    second: tuple[Process, str], user: Account, redis: Redis
) -> None:
    _, address = second
    async with connect(f"ws://{address}/ws/exports?token={user.token}") as ws:
        await log_out(user, "/api/auth/logout")
        export_id = str(uuid.uuid4())
        message = ProgressMessage(
            export_id=export_id, user_id=user.user_id, seq=0, status=ExportStatus.PROCESSING, percent=10
        )
        assert await publish_progress(redis, message) is not None
        got = await recv(ws)
        assert (got["export_id"], got["percent"]) == (export_id, 10)
