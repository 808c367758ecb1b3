"""Stopping a running render: the row cancelled by the API, or the SAQ job aborted on its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from redis.asyncio.client import PubSub
from saq.job import Status
from saq.queue.redis import RedisQueue

from gpu_worker.contract import ExportStatus, Phase, ProgressMessage, RenderRequest, export_channel
from gpu_worker.progress import publish_progress, read_snapshot
from gpu_worker.rows import ExportRows
from gpu_worker.worker import build_worker
from tests.integration.jobs.farm import Farm, next_message
from tests.media import MadeVideo
from tests.paced_render import paced_backend

LATE = {
    "cancelled": "UPDATE exports SET status = 'cancelled', finished_at = now() WHERE id = :id",
    "deleted": "DELETE FROM exports WHERE id = :id",
}

STOP_WITHIN_S = 2.0
SAQ_ABORT_POLL_S = 1.0
"""SAQ looks for aborted jobs once a second (its `abort` timer), then cancels the task."""
FINISHED = frozenset({Status.COMPLETE, Status.ABORTED, Status.FAILED})


async def wait_until_rendering(sub: PubSub) -> ProgressMessage:
    while True:
        message = await next_message(sub)
        if message.phase is Phase.RENDERING and message.frames_done > 0:
            return message


async def seconds_until_job_finished(queue: RedisQueue, export_id: uuid.UUID, since: float) -> float:
    while True:
        job = await queue.job(str(export_id))
        if job is not None and job.status in FINISHED:
            return time.monotonic() - since
        await asyncio.sleep(0.02)


async def test_cancelling_the_row_stops_the_render_within_two_seconds_and_leaves_nothing(
    farm: Farm, long_clip: MadeVideo
) -> None:
    user_id, export_id = await farm.submit(long_clip.path, RenderRequest())
    worker = build_worker(farm.settings, burst=True, dequeue_timeout=1, build_backend=paced_backend)
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))
        running = asyncio.create_task(worker.start())
        await wait_until_rendering(sub)

        # What the API's DELETE does: the conditional UPDATE, then the cancelled message.
        started = time.monotonic()
        assert await farm.sql(
            "UPDATE exports SET status = 'cancelled', finished_at = now()"
            " WHERE id = :id AND status IN ('pending', 'processing')",
            id=export_id,
        )
        cancelled = ProgressMessage(
            export_id=str(export_id), user_id=str(user_id), seq=0, status=ExportStatus.CANCELLED
        )
        assert await publish_progress(farm.redis, cancelled) is not None
        elapsed = await seconds_until_job_finished(farm.queue, export_id, started)
        await running

    assert elapsed < STOP_WITHIN_S
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.result) == (Status.COMPLETE, "stopped")
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["output_key"], row["error"]) == (
        ExportStatus.CANCELLED,
        1,
        None,
        None,
    )
    assert list((farm.settings.storage.local_root / "exports").rglob("*.mp4")) == []
    assert list(farm.settings.scratch_dir.iterdir()) == []
    snapshot = await read_snapshot(farm.redis, export_id)
    assert snapshot is not None
    assert snapshot.status is ExportStatus.CANCELLED


async def test_an_aborted_job_stops_the_render_and_hands_the_row_back_for_a_retry(
    farm: Farm, long_clip: MadeVideo
) -> None:
    _, export_id = await farm.submit(long_clip.path, RenderRequest())
    worker = build_worker(farm.settings, burst=True, dequeue_timeout=1, build_backend=paced_backend)
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))
        running = asyncio.create_task(worker.start())
        await wait_until_rendering(sub)

        started = time.monotonic()
        job = await farm.queue.job(str(export_id))
        assert job is not None
        await farm.queue.abort(job, "aborted by an operator")
        elapsed = await seconds_until_job_finished(farm.queue, export_id, started)
        await running
        handed_back = await next_message(sub)
        while handed_back.status is ExportStatus.PROCESSING:
            handed_back = await next_message(sub)

    assert elapsed < SAQ_ABORT_POLL_S + STOP_WITHIN_S
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.error) == (Status.ABORTED, "aborted by an operator")
    row = await farm.row(export_id)
    assert (row["status"], row["phase"], row["attempt"], row["worker_id"]) == (
        ExportStatus.PENDING,
        Phase.QUEUED,
        1,
        None,
    )
    assert (handed_back.status, handed_back.phase) == (ExportStatus.PENDING, Phase.QUEUED)
    assert list(farm.settings.scratch_dir.iterdir()) == []


async def test_an_attempt_whose_row_was_claimed_again_stops_without_writing(
    farm: Farm, long_clip: MadeVideo
) -> None:
    _, export_id = await farm.submit(long_clip.path, RenderRequest())
    worker = build_worker(farm.settings, burst=True, dequeue_timeout=1, build_backend=paced_backend)
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))
        running = asyncio.create_task(worker.start())
        await wait_until_rendering(sub)

        # What the reconciler's reset plus another worker's claim leave behind.
        started = time.monotonic()
        await farm.sql(
            "UPDATE exports SET attempt = 2, worker_id = 'other-box:1', progress = 7 WHERE id = :id",
            id=export_id,
        )
        elapsed = await seconds_until_job_finished(farm.queue, export_id, started)
        await running

    assert elapsed < STOP_WITHIN_S
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.result) == (Status.COMPLETE, "stopped")
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"], row["progress"], row["output_key"]) == (
        ExportStatus.PROCESSING,
        2,
        "other-box:1",
        7,
        None,
    )
    assert list(farm.settings.scratch_dir.iterdir()) == []


@pytest.mark.parametrize("late", LATE)
async def test_an_upload_that_finishes_after_the_export_was_cancelled_or_deleted_is_removed(
    farm: Farm, clip: MadeVideo, monkeypatch: pytest.MonkeyPatch, late: str
) -> None:
    """The API's cancel or DELETE lands between the worker's upload and its conditional complete():
    the row never got the output_key, so only the worker knows the object and must delete it."""
    _, export_id = await farm.submit(clip.path, RenderRequest())
    complete = ExportRows.complete
    uploaded: list[bool] = []

    async def after_the_api_acted(self: ExportRows, ident: uuid.UUID, *args: Any, **kwargs: Any) -> bool:
        uploaded.append(await farm.store.size(kwargs["output_key"]) is not None)
        await farm.sql(LATE[late], id=ident)
        return await complete(self, ident, *args, **kwargs)

    monkeypatch.setattr(ExportRows, "complete", after_the_api_acted)
    await farm.run_worker()

    assert uploaded == [True]
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.result) == (Status.COMPLETE, "stopped")
    exports = farm.settings.storage.local_root / "exports"
    assert [p for p in exports.rglob("*") if p.is_file()] == []
    assert farm.scratch_files() == []
