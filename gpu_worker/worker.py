"""SAQ worker for render machines; started by `vexport worker` or in-process by `vexport serve`.

Web-free by design: a GPU box runs this without the web stack. At start it probes the GPUs (in a
thread: opening NVENC sessions takes seconds) and opens the store, the Redis client for progress
and the Postgres pool into ctx; it runs `export_video`, the reconciler (RECONCILE_CRON, every minute
by default) and a scratch sweep every quarter hour. Both Redis clients reconnect with backoff, and the
queue waits out a Redis outage instead of spinning (gpu_worker.queue).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from saq import CronJob, Worker

from gpu_worker.contract import EXPORT_TASK, EncoderChoice
from gpu_worker.encoders.probe import GpuReport, probe_gpus
from gpu_worker.encoders.select import NVENC_CODECS
from gpu_worker.queue import BackoffRedisQueue, redis_client
from gpu_worker.rows import ExportRows
from gpu_worker.settings import WorkerSettings
from gpu_worker.store import open_store
from gpu_worker.tasks.context import CTX_KEY, WorkerServices, services_of
from gpu_worker.tasks.export import export_video
from gpu_worker.tasks.reconcile import reconcile_exports

log = logging.getLogger(__name__)
SCRATCH_MAX_AGE_S = 24 * 3600


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep_scratch(root: Path, max_age_s: float, now: float | None = None) -> int:
    """Remove files under `root` older than `max_age_s` (left by crashed renders); returns the count."""
    now = time.time() if now is None else now
    removed = 0
    if not root.exists():
        return 0
    for path in sorted(root.rglob("*"), reverse=True):
        try:
            if path.is_file() and now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed += 1
            elif path.is_dir() and path != root and not any(path.iterdir()):
                path.rmdir()
        except FileNotFoundError:
            continue
    return removed


async def probe_for(settings: WorkerSettings) -> GpuReport:
    """The GPU report jobs select their backend from; a CPU-only worker skips the probe, and a
    `--encoder gpu` worker refuses to start without a GPU whose NVENC works."""
    encoder = EncoderChoice(settings.encoder)
    if encoder is EncoderChoice.CPU:
        return GpuReport(driver_present=False, reason="CPU-only worker (--encoder cpu)")
    report = await asyncio.to_thread(probe_gpus)
    usable = {index for codec in NVENC_CODECS for index in report.nvenc_gpus(codec)}
    if settings.gpu_index is not None:
        usable &= {settings.gpu_index}
    if encoder is EncoderChoice.GPU and not usable:
        raise RuntimeError(f"--encoder gpu, but no usable NVENC GPU: {report.reason or 'see gpu-info'}")
    return report


def build_worker(
    settings: WorkerSettings,
    *,
    concurrency: int | None = None,
    burst: bool = False,
    dequeue_timeout: float = 0.0,
) -> Worker:
    """The render worker; `burst` (with a positive `dequeue_timeout`) stops it once the queue is empty."""
    redis_url = settings.redis_url
    if not redis_url:
        raise RuntimeError("REDIS_URL is not set and no embedded Redis was started")
    queue = BackoffRedisQueue.connect_to(redis_url, settings.queue_name)
    wid = worker_id()

    async def clean_scratch(ctx: dict[str, Any]) -> int:
        removed = await asyncio.to_thread(sweep_scratch, settings.scratch_dir, SCRATCH_MAX_AGE_S)
        if removed:
            log.info("removed %d stale scratch files", removed)
        return removed

    async def startup(ctx: dict[str, Any]) -> None:
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        report = await probe_for(settings)
        ctx[CTX_KEY] = WorkerServices(
            settings=settings,
            worker_id=wid,
            store=open_store(settings.storage),
            redis=redis_client(redis_url),
            rows=ExportRows.connect(settings.async_database_url),
            gpu_report=report,
        )
        log.info(
            "worker %s started on queue %s (encoder %s; %s)",
            wid,
            settings.queue_name,
            settings.encoder,
            report.reason or f"{len(report.gpus)} GPU(s)",
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        if CTX_KEY in ctx:
            services = services_of(ctx)
            await services.store.aclose()
            await services.redis.aclose()
            await services.rows.aclose()
        await queue.disconnect()

    return Worker(
        queue,
        functions=[(EXPORT_TASK, export_video)],
        id=wid,
        concurrency=concurrency or settings.concurrency,
        cron_jobs=[
            CronJob(reconcile_exports, cron=settings.reconcile_cron, timeout=120),
            CronJob(clean_scratch, cron="*/15 * * * *", timeout=600),
        ],
        startup=startup,
        shutdown=shutdown,
        burst=burst,
        dequeue_timeout=dequeue_timeout,
    )
