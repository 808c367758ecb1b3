"""Routing at POST /api/videos/{id}/export: the queue the row records and the job lands on, read
from the live worker registry in Redis; and a cancel aborting the job on the export's own queue."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from saq.job import Status
from saq.queue.redis import RedisQueue
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.lib.settings import Settings
from gpu_worker.registry import WORKERS_KEY, WorkerInfo, worker_key
from tests.fake_gpu import l4_worker
from tests.fixtures.app import csrf_headers
from tests.integration.exports.conftest import request_export

HEARTBEAT_TTL_MS = 60_000


@pytest.fixture
async def gpu_queue(export_settings: Settings) -> AsyncIterator[RedisQueue]:
    """The test's view of the GPU queue of this deployment."""
    q = RedisQueue.from_url(export_settings.core.redis_url or "", name=export_settings.core.gpu_queue_name)
    yield q
    await q.disconnect()


@pytest.fixture
async def heartbeat(redis: Redis) -> AsyncIterator[Any]:
    """Put a worker's heartbeat in the registry as a live worker would; removed afterwards."""
    written: list[str] = []

    async def beat(info: WorkerInfo) -> None:
        await redis.set(worker_key(info.id), msgspec.json.encode(info), px=HEARTBEAT_TTL_MS)
        await redis.sadd(WORKERS_KEY, info.id)  # type: ignore[misc]
        written.append(info.id)

    yield beat
    for ident in written:
        await redis.delete(worker_key(ident))
        await redis.srem(WORKERS_KEY, ident)  # type: ignore[misc]


async def row(db: AsyncEngine, export_id: str) -> tuple[str | None, str | None]:
    async with db.connect() as conn:
        found = await conn.execute(
            text("SELECT queue_name, fallback_reason FROM exports WHERE id = :id"), {"id": export_id}
        )
        queue_name, reason = found.one()
    return queue_name, reason


async def test_auto_with_no_gpu_worker_alive_is_routed_to_the_cpu_queue_with_the_reason(
    api: AsyncTestClient[Any],
    video_id: str,
    queue: RedisQueue,
    gpu_queue: RedisQueue,
    export_settings: Settings,
    db_engine: AsyncEngine,
) -> None:
    r = await request_export(api, video_id)

    export = r.json()
    reason = "no healthy GPU worker with NVENC H.264 is online"
    assert (r.status_code, export["fallback_reason"]) == (202, reason)
    assert await row(db_engine, export["id"]) == (export_settings.core.cpu_queue_name, reason)
    job = await queue.job(export["id"])
    assert job is not None
    assert job.status is Status.QUEUED
    assert await gpu_queue.job(export["id"]) is None


async def test_auto_with_a_healthy_gpu_worker_for_the_codec_is_routed_to_the_gpu_queue(
    api: AsyncTestClient[Any],
    video_id: str,
    queue: RedisQueue,
    gpu_queue: RedisQueue,
    heartbeat: Any,
    db_engine: AsyncEngine,
) -> None:
    await heartbeat(l4_worker(f"gpu-box:{uuid.uuid4().hex[:8]}", gpu_queue.name))

    r = await request_export(api, video_id, {"codec": "hevc", "segments": [{"start": "0", "end": "1"}]})

    export = r.json()
    assert (r.status_code, export["fallback_reason"]) == (202, None)
    assert await row(db_engine, export["id"]) == (gpu_queue.name, None)
    job = await gpu_queue.job(export["id"])
    assert job is not None
    assert job.status is Status.QUEUED
    assert await queue.job(export["id"]) is None


async def test_a_gpu_worker_whose_circuit_is_open_does_not_attract_auto_exports(
    api: AsyncTestClient[Any], video_id: str, queue: RedisQueue, heartbeat: Any, db_engine: AsyncEngine
) -> None:
    await heartbeat(l4_worker(f"gpu-box:{uuid.uuid4().hex[:8]}", f"{queue.name}-gpu", healthy=False))

    r = await request_export(api, video_id)

    reason = "no healthy GPU worker with NVENC H.264 is online"
    assert await row(db_engine, r.json()["id"]) == (queue.name, reason)


@pytest.mark.parametrize(("encoder", "gpu"), [("gpu", True), ("cpu", False)])
async def test_an_explicit_encoder_choice_picks_its_queue_whoever_is_online(
    api: AsyncTestClient[Any],
    video_id: str,
    queue: RedisQueue,
    gpu_queue: RedisQueue,
    db_engine: AsyncEngine,
    encoder: str,
    gpu: bool,
) -> None:
    r = await request_export(api, video_id, {"encoder": encoder, "segments": []})

    export_id = r.json()["id"]
    chosen = gpu_queue if gpu else queue
    assert await row(db_engine, export_id) == (chosen.name, None)
    assert await chosen.job(export_id) is not None


async def test_cancelling_an_export_aborts_its_job_on_the_gpu_queue(
    api: AsyncTestClient[Any], video_id: str, gpu_queue: RedisQueue
) -> None:
    export_id = (await request_export(api, video_id, {"encoder": "gpu", "segments": []})).json()["id"]

    r = await api.delete(f"/api/exports/{export_id}", headers=await csrf_headers(api))

    assert r.status_code == 204
    job = await gpu_queue.job(export_id)
    assert job is not None
    assert (job.status, job.error) == (Status.ABORTED, "cancelled")


async def test_auto_routed_to_the_cpu_says_why_as_a_typed_code(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    export = (await request_export(api, video_id)).json()

    assert (export["fallback_code"], export["fallback_reason"]) == (
        "no_gpu_worker",
        "no healthy GPU worker with NVENC H.264 is online",
    )


async def test_gpu_with_no_gpu_worker_online_says_at_once_why_it_waits_and_until_when(
    api: AsyncTestClient[Any], video_id: str, export_settings: Settings
) -> None:
    r = await request_export(api, video_id, {"encoder": "gpu", "segments": []})

    export = r.json()
    assert (r.status_code, export["status"], export["waiting_code"]) == (202, "pending", "no_gpu_worker")
    assert export["waiting_reason"] == (
        "no GPU worker is online: the export waits for one until `wait_until`, then renders on the CPU"
    )
    waits = dt.datetime.fromisoformat(export["wait_until"]) - dt.datetime.fromisoformat(export["created_at"])
    assert abs(waits.total_seconds() - export_settings.core.gpu_wait_s) < 1
    assert (await api.get(f"/api/exports/{export['id']}")).json() == export


async def test_gpu_with_a_gpu_worker_online_does_not_wait_for_one(
    api: AsyncTestClient[Any], video_id: str, gpu_queue: RedisQueue, heartbeat: Any
) -> None:
    await heartbeat(l4_worker(f"gpu-box:{uuid.uuid4().hex[:8]}", gpu_queue.name))

    export = (await request_export(api, video_id, {"encoder": "gpu", "segments": []})).json()

    assert (export["waiting_code"], export["waiting_reason"], export["wait_until"]) == (None, None, None)


async def test_a_cancelled_export_no_longer_waits(api: AsyncTestClient[Any], video_id: str) -> None:
    export_id = (await request_export(api, video_id, {"encoder": "gpu", "segments": []})).json()["id"]

    r = await api.post(f"/api/exports/{export_id}/cancel", headers=await csrf_headers(api))

    assert (r.json()["status"], r.json()["waiting_code"], r.json()["wait_until"]) == ("cancelled", None, None)
