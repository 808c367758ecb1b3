"""Progress websockets over a real server (uvicorn on a loopback port) and a real websocket client.

A live server (`tests.fixtures.live`) rather than the test client: see there why.
Messages are published the way the worker does, through `gpu_worker.progress.publish_progress`.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from backend.lib.settings import Settings
from gpu_worker.contract import ExportStatus, Phase, ProgressMessage, export_channel
from gpu_worker.progress import publish_progress
from tests.fixtures.app import csrf_headers
from tests.fixtures.live import Account, account, recv, rest_until_closed
from tests.integration.exports.conftest import Sql, drop_fanout_connection


@pytest.fixture
def live_settings(export_settings: Settings) -> Settings:
    """What `live` serves (see tests/integration/conftest.py)."""
    return export_settings


@pytest.fixture
async def video(owner: Account, clip: Path) -> str:
    files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
    r = await owner.http.post("/api/videos", files=files, headers=await csrf_headers(owner.http))
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def new_export(acc: Account, video: str) -> str:
    r = await acc.http.post(
        f"/api/videos/{video}/export", json={"resolution": "720p"}, headers=await csrf_headers(acc.http)
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def progress(redis: Redis, acc: Account, export_id: str, status: ExportStatus, percent: int) -> int:
    sent = await publish_progress(
        redis,
        ProgressMessage(
            export_id=export_id,
            user_id=acc.user_id,
            seq=0,
            status=status,
            phase=Phase.RENDERING if status == ExportStatus.PROCESSING else None,
            percent=percent,
        ),
    )
    assert sent is not None
    return sent.seq


def ws_url(live: str, path: str, acc: Account | None = None) -> str:
    return f"ws://{live}{path}" + (f"?token={acc.token}" if acc else "")


async def test_snapshot_first_then_live_messages_in_seq_order_then_close_on_terminal(
    live: str, owner: Account, video: str, redis: Redis, sql: Sql
) -> None:
    export_id = await new_export(owner, video)
    async with connect(ws_url(live, f"/ws/exports/{export_id}", owner)) as ws:
        snapshot = await recv(ws)
        assert (snapshot["export_id"], snapshot["status"], snapshot["seq"], snapshot["percent"]) == (
            export_id,
            "pending",
            0,
            0,
        )
        assert await progress(redis, owner, export_id, ExportStatus.PROCESSING, 40) == 1
        stale = ProgressMessage(
            export_id=export_id, user_id=owner.user_id, seq=1, status="processing", percent=5
        )
        await redis.publish(export_channel(export_id), msgspec.json.encode(stale))
        await redis.publish(export_channel(export_id), b"{not a progress message")
        assert await progress(redis, owner, export_id, ExportStatus.PROCESSING, 80) == 2
        await sql("UPDATE exports SET status = 'completed', progress = 100 WHERE id = :id", id=export_id)
        assert await progress(redis, owner, export_id, ExportStatus.COMPLETED, 100) == 3
        messages, code = await rest_until_closed(ws)
    assert [(m["seq"], m["status"], m["percent"]) for m in messages] == [
        (1, "processing", 40),
        (2, "processing", 80),
        (3, "completed", 100),
    ]
    assert messages[0]["phase"] == "rendering"
    assert code == 1000


async def test_the_snapshot_comes_from_redis_when_the_worker_has_written_one(
    live: str, owner: Account, video: str, redis: Redis
) -> None:
    export_id = await new_export(owner, video)
    await progress(redis, owner, export_id, ExportStatus.PROCESSING, 40)
    async with connect(ws_url(live, f"/ws/exports/{export_id}", owner)) as ws:
        snapshot = await recv(ws)
    assert (snapshot["seq"], snapshot["status"], snapshot["phase"], snapshot["percent"]) == (
        1,
        "processing",
        "rendering",
        40,
    )


@pytest.mark.parametrize(("status", "error"), [("completed", None), ("failed", "source unreadable")])
async def test_a_late_subscriber_gets_the_final_state_from_postgres_and_a_close(
    live: str, owner: Account, video: str, sql: Sql, status: str, error: str | None
) -> None:
    export_id = await new_export(owner, video)
    await sql(
        "UPDATE exports SET status = CAST(:status AS export_status), error = :error, attempt = 1 "
        "WHERE id = :id",
        status=status,
        error=error,
        id=export_id,
    )
    async with connect(ws_url(live, f"/ws/exports/{export_id}", owner)) as ws:
        messages, code = await rest_until_closed(ws)
    assert [(m["status"], m["error"], m["attempt"]) for m in messages] == [(status, error, 1)]
    assert code == 1000


async def test_another_users_export_and_an_unknown_id_close_with_4404(
    live: str, owner: Account, video: str
) -> None:
    export_id = await new_export(owner, video)
    intruder = await account(live, "intruder@example.com")
    try:
        for path in (f"/ws/exports/{export_id}", "/ws/exports/01890000-0000-7000-8000-000000000000"):
            async with connect(ws_url(live, path, intruder)) as ws:
                assert await rest_until_closed(ws) == ([], 4404)
    finally:
        await intruder.http.aclose()


async def test_an_anonymous_socket_closes_with_4401(live: str, owner: Account, video: str) -> None:
    export_id = await new_export(owner, video)
    for path in (f"/ws/exports/{export_id}", "/ws/exports"):
        async with connect(ws_url(live, path)) as ws:
            assert await rest_until_closed(ws) == ([], 4401)


async def test_a_revoked_token_is_accepted_then_closed_with_4401_saying_why(
    live: str, owner: Account, video: str
) -> None:
    export_id = await new_export(owner, video)
    headers = await csrf_headers(owner.http)
    token = (await owner.http.post("/api/tokens", json={"name": "old"}, headers=headers)).json()
    assert (await owner.http.delete(f"/api/tokens/{token['id']}", headers=headers)).status_code == 204
    for path in (f"/ws/exports/{export_id}", "/ws/exports"):
        async with connect(f"ws://{live}{path}?token={token['token']}") as ws:
            assert await rest_until_closed(ws) == ([], 4401)
            assert ws.close_reason == "invalid or revoked API token"


async def test_the_session_cookie_works_from_the_same_origin_and_not_from_another_site(
    live: str, owner: Account, video: str
) -> None:
    export_id = await new_export(owner, video)
    url = ws_url(live, f"/ws/exports/{export_id}")
    headers = {"Cookie": owner.cookie}
    async with connect(url, origin=f"http://{live}", additional_headers=headers) as ws:  # type: ignore[arg-type]
        assert (await recv(ws))["status"] == "pending"
    async with connect(url, origin="http://evil.example", additional_headers=headers) as ws:  # type: ignore[arg-type]
        assert await rest_until_closed(ws) == ([], 4403)


async def test_the_user_stream_snapshots_active_exports_then_forwards_every_export(
    live: str, owner: Account, video: str, redis: Redis, sql: Sql
) -> None:
    done = await new_export(owner, video)
    await sql("UPDATE exports SET status = 'completed' WHERE id = :id", id=done)
    older = await new_export(owner, video)
    newer = await new_export(owner, video)
    await progress(redis, owner, older, ExportStatus.PROCESSING, 30)
    async with connect(ws_url(live, "/ws/exports", owner)) as ws:
        snapshots = [await recv(ws), await recv(ws)]
        assert [(m["export_id"], m["seq"], m["status"]) for m in snapshots] == [
            (newer, 0, "pending"),
            (older, 1, "processing"),
        ]
        await progress(redis, owner, newer, ExportStatus.PROCESSING, 10)
        await progress(redis, owner, older, ExportStatus.COMPLETED, 100)
        live_messages = [await recv(ws), await recv(ws)]
    assert [(m["export_id"], m["seq"], m["status"]) for m in live_messages] == [
        (newer, 1, "processing"),
        (older, 2, "completed"),
    ]


async def test_after_redis_drops_the_shared_subscription_a_socket_catches_up_from_the_snapshot(
    live: str, owner: Account, video: str, redis: Redis
) -> None:
    export_id = await new_export(owner, video)
    async with connect(ws_url(live, f"/ws/exports/{export_id}", owner)) as ws:
        assert (await recv(ws))["seq"] == 0
        await drop_fanout_connection(redis)
        await progress(redis, owner, export_id, ExportStatus.PROCESSING, 40)  # nobody subscribed: lost
        assert ((m := await recv(ws))["seq"], m["percent"]) == (1, 40)  # from the snapshot, on resync
        await progress(redis, owner, export_id, ExportStatus.PROCESSING, 60)
        assert (await recv(ws))["seq"] == 2


ROW_FIELDS = ("status", "encoder_used", "fallback_code", "fallback_reason", "waiting_code", "wait_until")
"""What a progress message and GET /api/exports/{id} both carry (besides error and attempt)."""


async def test_a_late_subscriber_gets_the_frame_counts_of_the_final_message(
    live: str, owner: Account, video: str, redis: Redis, sql: Sql
) -> None:
    export_id = await new_export(owner, video)
    await sql("UPDATE exports SET status = 'processing', attempt = 1 WHERE id = :id", id=export_id)
    for status, done in ((ExportStatus.PROCESSING, 20), (ExportStatus.COMPLETED, 50)):
        message = ProgressMessage(
            export_id=export_id,
            user_id=owner.user_id,
            seq=0,
            status=status,
            percent=done * 2,
            frames_done=done,
            frames_total=50,
            attempt=1,
        )
        assert await publish_progress(redis, message) is not None
    await sql("UPDATE exports SET status = 'completed', progress = 100 WHERE id = :id", id=export_id)

    async with connect(ws_url(live, f"/ws/exports/{export_id}", owner)) as ws:
        messages, _ = await rest_until_closed(ws)

    assert [(m["status"], m["frames_done"], m["frames_total"]) for m in messages] == [("completed", 50, 50)]


@pytest.mark.parametrize("path", ["/ws/exports/{id}", "/ws/exports"])
async def test_the_snapshot_of_a_running_export_says_what_its_row_says(
    live: str, owner: Account, video: str, redis: Redis, path: str
) -> None:
    export_id = await new_export(owner, video)  # auto, no GPU worker online: routed to the CPU
    await progress(redis, owner, export_id, ExportStatus.PROCESSING, 40)  # a message without them
    row = (await owner.http.get(f"/api/exports/{export_id}")).json()

    async with connect(ws_url(live, path.format(id=export_id), owner)) as ws:
        snapshot = await recv(ws)

    assert row["fallback_code"] == "no_gpu_worker"
    assert {k: snapshot[k] for k in ROW_FIELDS} == {k: row[k] for k in ROW_FIELDS} | {"status": "processing"}
    assert (snapshot["seq"], snapshot["percent"]) == (1, 40)


@pytest.mark.parametrize("path", ["/ws/exports/{id}", "/ws/exports"])
async def test_the_snapshot_of_a_gpu_export_says_why_it_waits_and_until_when(
    live: str, owner: Account, video: str, path: str
) -> None:
    r = await owner.http.post(
        f"/api/videos/{video}/export", json={"encoder": "gpu"}, headers=await csrf_headers(owner.http)
    )
    row = r.json()

    async with connect(ws_url(live, path.format(id=row["id"]), owner)) as ws:
        snapshot = await recv(ws)

    assert row["waiting_code"] == "no_gpu_worker"
    assert {k: snapshot[k] for k in ROW_FIELDS} == {k: row[k] for k in ROW_FIELDS}
