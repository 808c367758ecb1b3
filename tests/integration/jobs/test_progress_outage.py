"""Live progress is best-effort: with the progress Redis unreachable an export still renders,
is stored and reaches its state in Postgres; a hand-back says which of its two writes failed.

The queue stays on the test Redis; only the publisher's client points at a port nobody listens on
(a real redis-py client from `redis_client`, no mocks), so every publish fails as in an outage.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from saq.job import Status

from gpu_worker.contract import ExportStatus, Phase, RenderRequest
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.queue import redis_client
from gpu_worker.rows import ExportRows
from gpu_worker.tasks.context import CTX_KEY, WorkerServices
from gpu_worker.tasks.enqueue import enqueue_export
from gpu_worker.tasks.export import TERMINAL_PUBLISH_ATTEMPTS, export_video
from gpu_worker.tasks.reconcile import reconcile_exports
from tests.fixtures.live import free_port
from tests.integration.jobs.farm import Farm
from tests.media import MadeVideo

EXPORT_LOG = "gpu_worker.tasks.export"


@pytest.fixture
async def dead_redis_ctx(farm: Farm, rows: ExportRows) -> AsyncIterator[dict[str, Any]]:
    """The worker's ctx for a task, with the progress client on a closed port."""
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    services = WorkerServices(
        settings=farm.settings,
        worker_id="outage-test:1",
        store=farm.store,
        redis=dead,
        rows=rows,
        gpu_report=GpuReport(driver_present=False, reason="no NVIDIA driver"),
    )
    yield {CTX_KEY: services}
    await dead.aclose()


async def queued_export(farm: Farm, clip: MadeVideo) -> tuple[uuid.UUID, uuid.UUID, Any]:
    user_id, export_id = await farm.submit(clip.path, RenderRequest())
    job = await farm.queue.job(str(export_id))
    assert job is not None
    return user_id, export_id, job


async def test_an_export_completes_in_the_database_and_is_stored_when_progress_cannot_be_published(
    farm: Farm, dead_redis_ctx: dict[str, Any], clip: MadeVideo, caplog: pytest.LogCaptureFixture
) -> None:
    user_id, export_id, job = await queued_export(farm, clip)
    caplog.set_level(logging.WARNING, logger=EXPORT_LOG)

    result = await export_video({**dead_redis_ctx, "job": job}, export_id=str(export_id))

    assert result == "completed"
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["progress"], row["phase"], row["error"]) == (
        ExportStatus.COMPLETED,
        1,
        100,
        None,
        None,
    )
    assert row["output_key"] == f"exports/{user_id}/{export_id}/holiday_clip.mp4"
    assert await farm.store.size(row["output_key"]) == row["size_bytes"]
    assert row["size_bytes"] > 0
    messages = [r.getMessage() for r in caplog.records if r.name == EXPORT_LOG]
    assert messages == [
        f"export {export_id}: live progress not published (Redis); the render goes on",
        f"export {export_id}: completed message not published after {TERMINAL_PUBLISH_ATTEMPTS} tries;"
        " the row has it",
    ]
    assert farm.scratch_files() == []


async def test_a_cancelled_attempt_hands_the_row_back_and_logs_only_the_failed_announcement(
    farm: Farm,
    dead_redis_ctx: dict[str, Any],
    long_clip: MadeVideo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, export_id, job = await queued_export(farm, long_clip)
    caplog.set_level(logging.WARNING, logger=EXPORT_LOG)
    task = asyncio.create_task(export_video({**dead_redis_ctx, "job": job}, export_id=str(export_id)))

    async with asyncio.timeout(30):
        while True:  # polls the row: the render thread is under way once its phase says so
            if (await farm.row(export_id))["phase"] == Phase.RENDERING:
                break
            await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"]) == (ExportStatus.PENDING, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == EXPORT_LOG]
    assert messages[-1] == (
        f"export {export_id}: row handed back to 'pending', but announcing it failed (Redis);"
        " progress streams read it from the row"
    )
    assert not any("could not hand the row back" in m for m in messages)
    assert farm.scratch_files() == []


async def test_the_reconciler_cron_uses_the_worker_settings_thresholds(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    lost = await farm.add_export(user_id, video_id, RenderRequest(), idle_s=60)
    services = WorkerServices(
        settings=replace(farm.settings, pending_grace_s=30.0),
        worker_id="reconcile-test:1",
        store=farm.store,
        redis=farm.redis,
        rows=rows,
        gpu_report=GpuReport(driver_present=False, reason="no NVIDIA driver"),
    )
    ctx: dict[str, Any] = {CTX_KEY: services, "worker": SimpleNamespace(queue=farm.queue)}

    assert await reconcile_exports(ctx) == {"requeued": [str(lost)], "failed": []}
    job = await farm.queue.job(str(lost))
    assert job is not None
    assert job.status is Status.QUEUED
    assert await enqueue_export(farm.queue, lost) is None
