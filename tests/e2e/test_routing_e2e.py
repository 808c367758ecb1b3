"""Routing with a real `vexport worker` process (CPU, as on this machine): `auto` goes to the CPU
queue when no GPU worker is alive, and a `gpu` export no GPU worker takes within GPU_WAIT_S moves to
the CPU queue (the worker's reconciler runs every second here) and is rendered there."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import Deploy
from tests.media import MadeVideo

BODY = {"resolution": "360p", "segments": [{"start": "0.5", "end": "1.5"}]}
EVERY_SECOND = "* * * * * *"


async def queue_of(db: AsyncEngine, export_id: str) -> str:
    async with db.connect() as conn:
        name = await conn.scalar(text("SELECT queue_name FROM exports WHERE id = :id"), {"id": export_id})
    assert isinstance(name, str)
    return name


async def test_auto_with_no_gpu_worker_alive_is_rendered_by_a_cpu_worker_from_the_cpu_queue(
    deploy: Deploy, source: MadeVideo, db_engine: AsyncEngine
) -> None:
    app = await deploy()
    await app.start_worker()
    video_id = await app.upload(source)

    export = await app.finished((await app.export(video_id, BODY))["id"])

    assert (export["status"], export["encoder_used"], export["fallback_reason"]) == (
        "completed",
        "libx264",
        "no healthy GPU worker with NVENC H.264 is online",
    )
    assert await queue_of(db_engine, export["id"]) == app.settings.core.cpu_queue_name


async def test_a_gpu_export_no_gpu_worker_takes_in_time_moves_to_the_cpu_queue_and_completes(
    deploy: Deploy, source: MadeVideo, db_engine: AsyncEngine
) -> None:
    app = await deploy()
    await app.start_worker(env={"GPU_WAIT_S": "1", "RECONCILE_CRON": EVERY_SECOND})
    video_id = await app.upload(source)

    requested = await app.export(video_id, {**BODY, "encoder": "gpu"})
    assert await queue_of(db_engine, requested["id"]) == app.settings.core.gpu_queue_name
    export = await app.finished(requested["id"])

    assert (export["status"], export["encoder_requested"], export["encoder_used"]) == (
        "completed",
        "gpu",
        "libx264",
    )
    assert export["fallback_reason"] == "no GPU worker took the export within 1 s"
    assert await queue_of(db_engine, export["id"]) == app.settings.core.cpu_queue_name
