"""SAQ worker settings for render machines; started by `vexport worker` or in-process by `vexport serve`.

Web-free by design: a GPU box runs this without the web stack. The export task itself arrives with
the jobs issue; today the worker probes the machine at start and keeps the scratch dir clean.
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
from saq.queue.redis import RedisQueue

from gpu_worker.settings import WorkerSettings

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


def build_worker(settings: WorkerSettings, *, concurrency: int | None = None) -> Worker:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set and no embedded Redis was started")
    # RedisQueue directly: saq's generic Queue.from_url refuses unix:// (the embedded Redis socket).
    queue = RedisQueue.from_url(settings.redis_url, name=settings.queue_name)

    async def clean_scratch(ctx: dict[str, Any]) -> int:
        removed = await asyncio.to_thread(sweep_scratch, settings.scratch_dir, SCRATCH_MAX_AGE_S)
        if removed:
            log.info("removed %d stale scratch files", removed)
        return removed

    async def startup(ctx: dict[str, Any]) -> None:
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        ctx["settings"] = settings
        log.info("worker %s started on queue %s", worker_id(), settings.queue_name)

    return Worker(
        queue,
        functions=[],
        id=worker_id(),
        concurrency=concurrency or settings.concurrency,
        cron_jobs=[CronJob(clean_scratch, cron="*/15 * * * *", timeout=600)],
        startup=startup,
    )
