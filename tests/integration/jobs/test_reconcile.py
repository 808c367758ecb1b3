"""The reconciler re-queues exports whose attempt died and fails those out of attempts."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis
from saq.job import Job, Status
from saq.queue.redis import RedisQueue
from saq.utils import now

from gpu_worker.contract import ExportStatus, Phase, RenderRequest, export_channel
from gpu_worker.rows import IDLE_PAGE_SIZE, ExportRows
from gpu_worker.settings import PENDING_GRACE_S
from gpu_worker.tasks.enqueue import enqueue_export
from gpu_worker.tasks.reconcile import ReconcileReport, reconcile
from tests.integration.jobs.farm import Farm, messages_until_terminal, next_message
from tests.media import MadeVideo

STEP_TIMEOUT_S = 10.0


class HeldAfterJobRead(RedisQueue):
    """The farm's queue as a second worker process sees it, whose first job lookup is answered and
    then held until `resume` is set: a reconciler run that read a dead attempt's job just before
    another run recovered that attempt, so it acts on a stale row and a stale job."""

    def __init__(self, redis_url: str, name: str) -> None:
        super().__init__(Redis.from_url(redis_url), name=name)
        self.job_read = asyncio.Event()
        self.resume = asyncio.Event()

    async def job(self, job_key: str) -> Job | None:
        job = await super().job(job_key)
        if not self.job_read.is_set():
            self.job_read.set()
            await self.resume.wait()
        return job


async def export_row(
    farm: Farm, clip: MadeVideo, status: str, attempt: int, idle_s: float = 0.0
) -> uuid.UUID:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    return await farm.add_export(
        user_id, video_id, RenderRequest(), status=status, attempt=attempt, idle_s=idle_s
    )


async def running_job(farm: Farm, export_id: uuid.UUID, *, silent_for_s: int = 0) -> None:
    """Put the export's job in the state a worker gives it: dequeued, active, touched `silent_for_s` ago."""
    assert await enqueue_export(farm.queue, export_id) is not None
    job = await farm.queue.dequeue(timeout=1)
    assert job is not None
    assert job.key == str(export_id)
    await job.update(status=Status.ACTIVE, started=now(), touched=now() - silent_for_s * 1000)


async def test_a_processing_export_without_a_job_is_requeued_and_rendered_as_attempt_two(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    export_id = await export_row(farm, clip, "processing", attempt=1)
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))

        report = await reconcile(rows, farm.queue, farm.redis)

        assert report.requeued == [str(export_id)]
        assert report.failed == []
        requeued = await next_message(sub)
        assert (requeued.status, requeued.phase, requeued.attempt) == (ExportStatus.PENDING, Phase.QUEUED, 1)
        row = await farm.row(export_id)
        assert (row["status"], row["attempt"]) == (ExportStatus.PENDING, 1)
        job = await farm.queue.job(str(export_id))
        assert job is not None
        assert job.status is Status.QUEUED

        await farm.run_worker()
        messages = await messages_until_terminal(sub)

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["progress"]) == (ExportStatus.COMPLETED, 2, 100)
    assert {m.attempt for m in messages} == {2}


async def test_an_export_out_of_attempts_fails_as_worker_lost(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    export_id = await export_row(farm, clip, "processing", attempt=3)
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))

        report = await reconcile(rows, farm.queue, farm.redis)

        failed = await next_message(sub)
    assert (report.requeued, report.failed) == ([], [str(export_id)])
    row = await farm.row(export_id)
    assert (row["status"], row["error"], row["attempt"]) == (
        ExportStatus.FAILED,
        "worker lost (3 attempts)",
        3,
    )
    assert row["finished_at"] is not None
    assert (failed.status, failed.error) == (ExportStatus.FAILED, "worker lost (3 attempts)")
    assert await farm.queue.job(str(export_id)) is None


async def test_two_reconcilers_that_see_the_same_dead_attempt_requeue_it_once_and_keep_its_new_job(
    farm: Farm, rows: ExportRows, clip: MadeVideo, redis_url: str
) -> None:
    export_id = await export_row(farm, clip, "processing", attempt=1)
    await running_job(farm, export_id, silent_for_s=120)
    late_queue = HeldAfterJobRead(redis_url, farm.queue.name)
    late_run: asyncio.Task[ReconcileReport] = asyncio.create_task(reconcile(rows, late_queue, farm.redis))
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await late_queue.job_read.wait()

        first = await reconcile(rows, farm.queue, farm.redis)
        late_queue.resume.set()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            late = await late_run
    finally:
        late_run.cancel()
        await late_queue.disconnect()

    assert (first.requeued, first.failed) == ([str(export_id)], [])
    assert (late.requeued, late.failed) == ([], [])
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"]) == (ExportStatus.PENDING, 1)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.attempts, job.error) == (Status.QUEUED, 0, None)


async def test_a_live_job_is_left_alone_and_a_silent_one_is_replaced(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    live = await export_row(farm, clip, "processing", attempt=1)
    await running_job(farm, live)
    silent = await export_row(farm, clip, "processing", attempt=1)
    await running_job(farm, silent, silent_for_s=120)

    report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([str(silent)], [])
    assert (await farm.row(live))["status"] == ExportStatus.PROCESSING
    assert (await farm.row(silent))["status"] == ExportStatus.PENDING
    live_job, silent_job = await farm.queue.job(str(live)), await farm.queue.job(str(silent))
    assert live_job is not None
    assert silent_job is not None
    assert live_job.status is Status.ACTIVE
    assert (silent_job.status, silent_job.attempts) == (Status.QUEUED, 0)


async def test_an_export_whose_job_is_being_aborted_is_left_to_its_worker(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    export_id = await export_row(farm, clip, "processing", attempt=1)
    await running_job(farm, export_id)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    await farm.queue.abort(job, "aborted by an operator")

    report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([], [])
    assert (await farm.row(export_id))["status"] == ExportStatus.PROCESSING
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.error) == (Status.ABORTING, "aborted by an operator")


async def test_a_row_that_stopped_being_written_is_requeued_even_if_its_job_looks_alive(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    export_id = await export_row(farm, clip, "processing", attempt=2, idle_s=3600)
    await running_job(farm, export_id)

    report = await reconcile(rows, farm.queue, farm.redis)

    assert report.requeued == [str(export_id)]
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"]) == (ExportStatus.PENDING, 2)


async def test_a_pending_export_whose_enqueue_was_lost_is_enqueued(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    lost = await export_row(farm, clip, "pending", attempt=0, idle_s=PENDING_GRACE_S + 60)
    waiting = await export_row(farm, clip, "pending", attempt=0, idle_s=PENDING_GRACE_S + 60)
    await enqueue_export(farm.queue, waiting)
    recent = await export_row(farm, clip, "pending", attempt=0)
    exhausted = await export_row(farm, clip, "pending", attempt=3, idle_s=PENDING_GRACE_S + 60)

    report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([str(lost)], [str(exhausted)])
    job = await farm.queue.job(str(lost))
    assert job is not None
    assert job.status is Status.QUEUED
    assert await farm.queue.job(str(recent)) is None
    row = await farm.row(exhausted)
    assert (row["status"], row["error"]) == (ExportStatus.FAILED, "worker lost (3 attempts)")


async def test_a_lost_export_behind_a_full_page_of_waiting_ones_is_still_enqueued(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    for _ in range(IDLE_PAGE_SIZE + 1):
        waiting = await farm.add_export(user_id, video_id, RenderRequest(), idle_s=PENDING_GRACE_S + 3600)
        await enqueue_export(farm.queue, waiting)
    lost = await farm.add_export(user_id, video_id, RenderRequest(), idle_s=PENDING_GRACE_S + 60)

    report = await reconcile(rows, farm.queue, farm.redis)

    assert (report.requeued, report.failed) == ([str(lost)], [])
    job = await farm.queue.job(str(lost))
    assert job is not None
    assert job.status is Status.QUEUED
