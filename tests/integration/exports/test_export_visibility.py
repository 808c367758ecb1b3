"""Where an export was queued and which worker rendered it are farm internals (hostnames, pids):
owners see null there, operators see the values, on every endpoint that returns an export."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from tests.integration.exports.conftest import Sql, request_export

WORKER = "render-host-7:4242"


@pytest.fixture
async def claimed(api: AsyncTestClient[Any], video_id: str, sql: Sql) -> str:
    """An export a worker has claimed: its row names the queue and the worker."""
    export_id = (await request_export(api, video_id)).json()["id"]
    await sql(
        "UPDATE exports SET status = 'processing', attempt = 1, worker_id = :worker WHERE id = :id",
        worker=WORKER,
        id=export_id,
    )
    return str(export_id)


async def test_the_owner_sees_neither_queue_nor_worker(api: AsyncTestClient[Any], claimed: str) -> None:
    polled = (await api.get(f"/api/exports/{claimed}")).json()
    listed = (await api.get("/api/exports")).json()["items"][0]
    for seen in (polled, listed):
        assert (seen["status"], seen["queue_name"], seen["worker_id"]) == ("processing", None, None)


async def test_an_operator_sees_queue_and_worker(
    api: AsyncTestClient[Any], claimed: str, sql: Sql, export_settings: Settings
) -> None:
    await sql("UPDATE users SET is_operator = true")
    polled = (await api.get(f"/api/exports/{claimed}")).json()
    listed = (await api.get("/api/exports", params={"scope": "all"})).json()["items"][0]
    for seen in (polled, listed):
        assert (seen["queue_name"], seen["worker_id"]) == (export_settings.core.cpu_queue_name, WORKER)


async def test_the_request_answer_hides_the_queue_from_the_owner(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    created = await request_export(api, video_id)
    assert created.status_code == 202
    assert (created.json()["queue_name"], created.json()["worker_id"]) == (None, None)
