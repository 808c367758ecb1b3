"""SAQ worker for render machines; started by `vexport worker` or in-process by `vexport serve`.

Web-free by design: a GPU box runs this without the web stack. Building it probes the GPUs
(opening NVENC sessions takes seconds), which makes it a GPU worker on the GPU queue or a CPU
worker on the CPU queue (gpu_worker.routing); at start it opens the store, the Redis client for
progress and the Postgres pool into ctx, and a GPU worker's circuit breaker and NVENC session
slots (gpu_worker.breaker); before its first job it takes back what a previous incarnation on this
host was rendering and removes dead attempts' scratch (gpu_worker.tasks.recover); it runs
`export_video`, the reconciler (RECONCILE_CRON, every minute by default) and a scratch sweep of old
files every quarter hour. Both Redis clients reconnect with backoff, and the
queue waits out a Redis outage instead of spinning (gpu_worker.queue).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from saq import CronJob, Worker

from gpu_worker.breaker import BREAKER_KEY, CircuitBreaker, NvencSessions
from gpu_worker.contract import EXPORT_TASK, EncoderChoice
from gpu_worker.drain import DrainableQueue
from gpu_worker.encoders.probe import GpuReport, probe_gpus
from gpu_worker.encoders.select import Selection
from gpu_worker.engine.run import BackendFactory
from gpu_worker.logs import bind_job_context
from gpu_worker.metrics import exporter_ready, observe_job, start_exporter, stop_exporter
from gpu_worker.queue import redis_client
from gpu_worker.registry import PRESENCE_KEY, Presence, stop_presence
from gpu_worker.routing import worker_gpu, worker_queue
from gpu_worker.rows import ExportRows
from gpu_worker.settings import WorkerSettings
from gpu_worker.store import open_store
from gpu_worker.tasks.context import CTX_KEY, WorkerServices, services_of
from gpu_worker.tasks.export import export_video
from gpu_worker.tasks.reconcile import reconcile_exports
from gpu_worker.tasks.recover import RECOVERY_KEY, StartRecovery

log = logging.getLogger(__name__)
SCRATCH_MAX_AGE_S = 24 * 3600
GpuProbe = Callable[[bool], GpuReport]
"""The GPU probe, called with `refresh` (encoders.probe.probe_gpus; tests pass a fake GPU)."""


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


def probe_for(settings: WorkerSettings, probe: GpuProbe = probe_gpus) -> GpuReport:
    """The GPU report jobs select their backend from and the worker's kind follows; a CPU-only
    worker skips the probe, and a `--encoder gpu` worker refuses to start without a GPU whose
    NVENC works."""
    encoder = EncoderChoice(settings.encoder)
    if encoder is EncoderChoice.CPU:
        return GpuReport(driver_present=False, reason="CPU-only worker (--encoder cpu)")
    report = probe(False)
    if encoder is EncoderChoice.GPU and worker_gpu(report, settings.gpu_index) is None:
        raise RuntimeError(f"--encoder gpu, but no usable NVENC GPU: {report.reason or 'see gpu-info'}")
    return report


def reprobe(probe: GpuProbe, gpu: int) -> str | None:
    """The circuit breaker's half-open check: a fresh probe; None when `gpu`'s NVENC works again."""
    report = probe(True)
    if worker_gpu(report, gpu) == gpu:
        return None
    return report.nvenc_reason("h264", gpu)


def gpu_breaker(settings: WorkerSettings, gpu: int, probe: GpuProbe) -> CircuitBreaker:
    return CircuitBreaker(
        gpu,
        threshold=settings.breaker_failures,
        window_s=settings.breaker_window_s,
        cooldown_s=settings.breaker_cooldown_s,
        probe=partial(reprobe, probe, gpu),
    )


def build_worker(
    settings: WorkerSettings,
    *,
    concurrency: int | None = None,
    burst: bool = False,
    dequeue_timeout: float = 0.0,
    probe: GpuProbe = probe_gpus,
    build_backend: BackendFactory = Selection.backend,
    ident: str | None = None,
) -> Worker:
    """The render worker; `burst` (with a positive `dequeue_timeout`) stops it once the queue is empty.
    `ident` is its id in the registry, on export rows and in logs (default `worker_id()`).

    The GPU probe runs here (seconds on a GPU machine, cached per process), since the worker's kind
    picks its queue: a GPU worker takes the GPU queue and has a circuit breaker and NVENC session
    slots for its GPU; a CPU worker takes the CPU queue. `probe` and `build_backend` let tests
    stand in a GPU.
    """
    redis_url = settings.redis_url
    if not redis_url:
        raise RuntimeError("REDIS_URL is not set and no embedded Redis was started")
    report = probe_for(settings, probe)
    gpu = worker_gpu(report, settings.gpu_index)
    queue = DrainableQueue.connect_to(redis_url, worker_queue(settings, gpu))
    wid = ident or worker_id()

    async def clean_scratch(ctx: dict[str, Any]) -> int:
        removed = await asyncio.to_thread(sweep_scratch, settings.scratch_dir, SCRATCH_MAX_AGE_S)
        if removed:
            log.info("removed %d stale scratch files", removed)
        return removed

    async def startup(ctx: dict[str, Any]) -> None:
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        await start_exporter(ctx, settings.metrics_port)
        breaker = None if gpu is None else gpu_breaker(settings, gpu, probe)
        if breaker is not None:
            ctx[BREAKER_KEY] = breaker
        ctx[CTX_KEY] = WorkerServices(
            settings=settings,
            worker_id=wid,
            store=open_store(settings.storage),
            redis=redis_client(redis_url),
            rows=ExportRows.connect(settings.async_database_url),
            gpu_report=report,
            breaker=breaker,
            sessions=NvencSessions(settings.nvenc_sessions),
            build_backend=build_backend,
        )
        exporter_ready(ctx, worker_id=wid, queue=queue.name, settings=settings, report=report)
        ctx[RECOVERY_KEY] = await StartRecovery.start(ctx)
        ctx[PRESENCE_KEY] = await Presence.start(ctx[CTX_KEY], ctx["worker"], gpu)
        log.info(
            "worker %s started on queue %s (encoder %s; %s)",
            wid,
            queue.name,
            settings.encoder,
            report.reason or f"{len(report.gpus)} GPU(s)",
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        await stop_exporter(ctx)
        await stop_presence(ctx)
        if (recovery := ctx.pop(RECOVERY_KEY, None)) is not None:
            await recovery.stop()
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
        before_process=[bind_job_context],
        after_process=[observe_job],
        burst=burst,
        dequeue_timeout=dequeue_timeout,
    )


def serve_workers(
    settings: WorkerSettings,
    *,
    probe: GpuProbe = probe_gpus,
    build_backend: BackendFactory = Selection.backend,
) -> list[Worker]:
    """`vexport serve`'s in-process workers. On a GPU machine the first is a GPU worker on the GPU
    queue, which leaves `cpu`, VP9 and ProRes exports (routed to the CPU queue) to no one on a
    one-machine install; so a CPU worker (`{worker_id()}:cpu`, no metrics port of its own) takes the
    CPU queue beside it. On a machine without a usable GPU the one CPU worker takes the CPU queue."""
    first = build_worker(settings, probe=probe, build_backend=build_backend)
    if first.queue.name != settings.gpu_queue_name:
        return [first]
    cpu_settings = replace(settings, encoder=EncoderChoice.CPU.value, worker_queue=None, metrics_port=None)
    return [
        first,
        build_worker(cpu_settings, probe=probe, build_backend=build_backend, ident=f"{worker_id()}:cpu"),
    ]
