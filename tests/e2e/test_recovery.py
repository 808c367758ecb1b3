"""Worker processes that stop, die, or lose Redis mid-render: no export is lost or stuck.

The reconciler is a SAQ cron job of every worker (RECONCILE_CRON, every minute by default), so these
tests run its function, `gpu_worker.tasks.reconcile.reconcile`, against the same Postgres and Redis
as the workers, with the production thresholds.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import pytest
from saq.job import Status
from saq.queue.redis import RedisQueue

from gpu_worker.rows import ExportRows
from gpu_worker.settings import WORKER_HEARTBEAT_S
from gpu_worker.tasks.reconcile import ReconcileReport, reconcile
from gpu_worker.tasks.recover import SILENT_BEATS
from tests.e2e.conftest import Deploy, Deployment, RedisServer, eventually
from tests.media import MadeVideo, decode_output

pytestmark = pytest.mark.slow

WHOLE_AT_SOURCE_SIZE = {"resolution": "source", "quality": "high"}
GRACEFUL_STOP_WITHIN_S = 5.0
IDLE_CPU_WINDOW_S = 3.0
IDLE_CPU_MAX_S = 0.3
"""CPU seconds a worker may use in IDLE_CPU_WINDOW_S while Redis is down: reconnect attempts, not a spin."""
TAKEN_BACK_WITHIN_S = SILENT_BEATS * WORKER_HEARTBEAT_S + 5.0
"""From the next worker being up to the killed worker's export claimed again: its heartbeat must
fall silent (at most SILENT_BEATS intervals after the kill), then a dequeue."""
BACK_TO_WORK_WITHIN_S = 10.0
"""From Redis answering again to a new export completed: the dequeue backoff (2 s cap) plus the render."""


async def run_reconciler(app: Deployment) -> ReconcileReport:
    """One run of the reconciler cron, exactly as a worker runs it, on this deployment's services."""
    rows = ExportRows.connect(app.settings.core.async_database_url)
    queue = RedisQueue.from_url(app.settings.core.redis_url or "", name=app.queue_name)
    try:
        return await reconcile(rows, queue, app.redis)
    finally:
        await queue.disconnect()
        await rows.aclose()


async def test_a_worker_process_stops_promptly_and_cleanly_on_sigterm_after_rendering(
    deploy: Deploy, source: MadeVideo
) -> None:
    app = await deploy()
    worker = await app.start_worker()
    export = await app.finished((await app.export(await app.upload(source), {"resolution": "360p"}))["id"])
    assert export["status"] == "completed"

    asked = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.proc.wait, GRACEFUL_STOP_WITHIN_S)
    assert code == 0
    assert time.monotonic() - asked < GRACEFUL_STOP_WITHIN_S


async def test_a_render_whose_worker_is_killed_is_taken_back_by_the_next_worker_of_the_host_at_once(
    deploy: Deploy, long_source: MadeVideo, tmp_path: Path
) -> None:
    """Not after the reconciler's ~71 s: the next worker started on the host sees that the worker
    id on the row is this host's and its process is gone (gpu_worker.tasks.recover)."""
    app = await deploy()
    doomed = await app.start_worker()
    export_id = (await app.export(await app.upload(long_source), WHOLE_AT_SOURCE_SIZE))["id"]
    await app.rendering(export_id)

    doomed.kill()
    assert (await app.get(export_id))["status"] == "processing"
    survivor = await app.start_worker()

    async def second_attempt() -> bool:
        return bool((await app.get(export_id))["attempt"] == 2)

    await eventually(second_attempt, within_s=TAKEN_BACK_WITHIN_S, what="the second attempt")
    export = await app.finished(export_id)
    assert (export["status"], export["attempt"], export["progress"], export["error"]) == (
        "completed",
        2,
        100,
        None,
    )
    assert f"start-up: took back from {socket.gethostname()}:{doomed.pid}" in survivor.log_text()
    assert f"export {export_id}: attempt 2 claimed" in survivor.log_text()
    output = tmp_path / "output.mp4"
    output.write_bytes((await app.download(export_id)).content)
    assert decode_output(output).indices == list(range(500))
    assert survivor.scratch_files() == []
    assert doomed.scratch_files() != [], "SIGKILL leaves the partial render (in its own scratch dir here)"


async def test_a_redis_restart_mid_render_leaves_no_export_processing_and_the_worker_working(
    deploy: Deploy, private_redis: RedisServer, long_source: MadeVideo, source: MadeVideo
) -> None:
    app = await deploy(redis_url=private_redis.url)
    worker = await app.start_worker()
    export_id = (await app.export(await app.upload(long_source), WHOLE_AT_SOURCE_SIZE))["id"]
    await app.rendering(export_id)

    private_redis.kill()

    async def render_over() -> bool:
        return worker.scratch_files() == []

    await eventually(render_over, within_s=30, what="the render attempt to end while Redis is down")
    assert worker.alive(), worker.log_text()[-3000:]
    await private_redis.start()
    await run_reconciler(app)

    export = await app.get(export_id)
    assert export["status"] != "processing", export
    if export["status"] == "failed":
        assert export["error"], export
    elif export["status"] == "pending":
        # Handed back for a retry (Redis failed it at the upload phase change): it must still
        # have a job that a worker will run, or the reconciler would have re-queued it.
        queue = RedisQueue.from_url(private_redis.url, name=app.queue_name)
        try:
            job = await queue.job(export_id)
        finally:
            await queue.disconnect()
        assert job is not None
        assert job.status in {Status.QUEUED, Status.ACTIVE}, job
    else:
        assert export["status"] == "completed", export
    assert worker.alive()
    after = await app.finished((await app.export(await app.upload(source), {"resolution": "360p"}))["id"])
    assert (after["status"], after["attempt"]) == ("completed", 1), "the worker takes jobs again"


async def test_an_idle_worker_does_not_spin_while_redis_is_down_and_takes_jobs_again_once_it_is_back(
    deploy: Deploy, private_redis: RedisServer, source: MadeVideo
) -> None:
    app = await deploy(redis_url=private_redis.url)
    worker = await app.start_worker()

    private_redis.kill()
    await asyncio.sleep(0.5)  # let it notice
    cpu_before = worker.cpu_seconds()
    await asyncio.sleep(IDLE_CPU_WINDOW_S)  # the measurement window itself, not a wait for an event
    idle_cpu = worker.cpu_seconds() - cpu_before

    assert worker.alive(), worker.log_text()[-3000:]
    assert idle_cpu < IDLE_CPU_MAX_S, f"{idle_cpu:.2f} s of CPU in {IDLE_CPU_WINDOW_S} s without Redis"
    log = worker.log_text()
    assert log.count("Redis unreachable") == 1, log[-3000:]

    await private_redis.start()
    back = time.monotonic()
    video_id = await app.upload(source)
    export = await app.finished(
        (await app.export(video_id, {"resolution": "360p"}))["id"], BACK_TO_WORK_WITHIN_S
    )
    assert (export["status"], export["attempt"]) == ("completed", 1)
    assert time.monotonic() - back < BACK_TO_WORK_WITHIN_S
    assert worker.log_text().count("Redis reachable again") == 1
