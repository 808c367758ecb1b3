"""The reconciler reads the worker registry: a 'processing' export whose worker's heartbeat expired
is dead once its row has not been written for WORKER_TTL_S, long before STALE_AFTER_S; a worker
still heartbeating keeps its export however long its row has been quiet (up to STALE_AFTER_S)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
from saq.job import Status
from saq.utils import now

from gpu_worker.contract import ExportStatus, RenderRequest
from gpu_worker.registry import WORKERS_KEY, worker_key
from gpu_worker.rows import ExportRows
from gpu_worker.settings import WORKER_TTL_S
from gpu_worker.tasks.enqueue import enqueue_export
from gpu_worker.tasks.reconcile import reconcile
from tests.fake_gpu import l4_worker
from tests.integration.jobs.farm import Farm
from tests.media import MadeVideo

QUIET_S = WORKER_TTL_S + 5
"""Longer than a heartbeat lives, far shorter than STALE_AFTER_S."""


@pytest.fixture
def worker_id() -> str:
    return f"render-box-{uuid.uuid4().hex[:8]}:4242"


@asynccontextmanager
async def heartbeat(farm: Farm, worker_id: str, value: bytes) -> AsyncIterator[None]:
    """`worker_id` alive in the registry, as a Presence writes it (key with a TTL, id in the set)."""
    await farm.redis.set(worker_key(worker_id), value, px=int(WORKER_TTL_S * 1000))
    await farm.redis.sadd(WORKERS_KEY, worker_id)  # type: ignore[misc]
    try:
        yield
    finally:
        await farm.redis.delete(worker_key(worker_id))
        await farm.redis.srem(WORKERS_KEY, worker_id)  # type: ignore[misc]


async def claimed_export(farm: Farm, clip: MadeVideo, worker_id: str, *, quiet_s: float) -> uuid.UUID:
    """An attempt-1 export as `worker_id` claimed it, its SAQ job active and freshly touched (the
    state a SIGKILL leaves for a minute), its row last written `quiet_s` ago."""
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    export_id = await farm.add_export(user_id, video_id, RenderRequest(), status="processing", attempt=1)
    await farm.sql(
        "UPDATE exports SET worker_id = :worker_id, updated_at = now() - make_interval(secs => :quiet_s)"
        " WHERE id = :id",
        id=export_id,
        worker_id=worker_id,
        quiet_s=quiet_s,
    )
    job = await enqueue_export(farm.queue, export_id)
    assert job is not None
    await job.update(status=Status.ACTIVE, started=now(), touched=now())
    return export_id


async def test_an_export_whose_worker_left_the_registry_is_requeued_after_the_ttl(
    farm: Farm, rows: ExportRows, clip: MadeVideo, worker_id: str
) -> None:
    export_id = await claimed_export(farm, clip, worker_id, quiet_s=QUIET_S)

    report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([str(export_id)], [])
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"]) == (ExportStatus.PENDING, 1, None)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.attempts) == (Status.QUEUED, 0)


async def test_an_export_whose_worker_still_heartbeats_is_left_alone(
    farm: Farm, rows: ExportRows, clip: MadeVideo, worker_id: str
) -> None:
    export_id = await claimed_export(farm, clip, worker_id, quiet_s=QUIET_S)
    info = l4_worker(worker_id, farm.settings.queue_name)

    async with heartbeat(farm, worker_id, msgspec.json.encode(info)):
        report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([], [])
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"]) == (ExportStatus.PROCESSING, 1, worker_id)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert job.status is Status.ACTIVE


async def test_an_export_written_within_the_ttl_is_left_alone_while_its_worker_expires(
    farm: Farm, rows: ExportRows, clip: MadeVideo, worker_id: str
) -> None:
    export_id = await claimed_export(farm, clip, worker_id, quiet_s=1)

    report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([], [])
    assert (await farm.row(export_id))["status"] == ExportStatus.PROCESSING


async def test_an_export_out_of_attempts_whose_worker_left_fails_as_worker_lost(
    farm: Farm, rows: ExportRows, clip: MadeVideo, worker_id: str
) -> None:
    export_id = await claimed_export(farm, clip, worker_id, quiet_s=QUIET_S)

    report = await reconcile(rows, farm.queue, farm.redis, max_attempts=1)

    assert (report.requeued, report.failed) == ([], [str(export_id)])
    row = await farm.row(export_id)
    assert (row["status"], row["error"]) == (ExportStatus.FAILED, "worker lost (1 attempts)")
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.error) == (Status.ABORTED, "worker lost")


async def test_an_export_whose_worker_heartbeats_in_a_format_this_version_cannot_read_is_left_alone(
    farm: Farm, rows: ExportRows, clip: MadeVideo, worker_id: str
) -> None:
    """A rolling upgrade: the other version's heartbeat still proves its worker alive."""
    export_id = await claimed_export(farm, clip, worker_id, quiet_s=QUIET_S)

    async with heartbeat(farm, worker_id, b'{"id": 7}'):
        report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([], [])
    assert (await farm.row(export_id))["status"] == ExportStatus.PROCESSING
