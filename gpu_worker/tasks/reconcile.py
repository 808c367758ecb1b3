"""The reconciler (SAQ cron, RECONCILE_CRON: every minute by default): no export stays 'processing'
or 'pending' forever. Its thresholds are the worker's settings STALE_AFTER_S, WORKER_TTL_S and
PENDING_GRACE_S.

- 'processing' whose SAQ job (key = export id) is gone, neither active nor aborting, or stuck
  (heartbeat or timeout exceeded), or whose row has not been written for worker_ttl_s while the
  worker that claimed it (`worker_id`) is no longer in the registry (its heartbeat expired:
  killed, or its machine died), or, whatever the registry says, not written for stale_after_s (a
  live attempt writes it at least every 15 s; this backstop also covers a worker that heartbeats
  but whose render hangs, and the time the registry cannot be read): that attempt is dead. A
  worker that is merely slow is still in the registry, so the registry rule never takes its
  export. A job still marked active (a killed worker's job looks so until its SAQ heartbeat
  lapses) is finished as aborted, then the row goes back to 'pending' and is re-enqueued, or fails
  with "worker lost (N attempts)" once MAX_ATTEMPTS claims were used.
- 'pending' for over pending_after_s with no queued or running job (the enqueue after the API's
  insert was lost, or the last job ended without a claim): re-enqueued, or failed likewise.
Every change is a conditional UPDATE on (id, attempt, status), so a worker that comes back to
life, or a second reconciler running at the same time, cannot undo it or be undone.
Both kinds are walked whole (ExportRows.idle pages through them), so however many exports wait
behind a busy farm, a lost one behind them is still found.

Every worker runs the cron on the queue it takes jobs from (SAQ keeps one cron job per queue), so
with GPU and CPU workers it runs once per queue and minute; each run looks at both queues (an
export is handed back to the queue its row names), then moves pending exports that no GPU worker
will take off the GPU queue (gpu_worker.routing.reroute_waiting). Running twice changes nothing more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from saq import Queue
from saq.job import Job, Status

from gpu_worker.contract import ExportStatus, Phase, ProgressMessage
from gpu_worker.progress import publish_progress
from gpu_worker.registry import REGISTRY_ERRORS, live_worker_ids
from gpu_worker.routing import ExportQueues, reroute_waiting
from gpu_worker.rows import ExportRows, IdleExport
from gpu_worker.settings import PENDING_GRACE_S, STALE_AFTER_S, WORKER_TTL_S
from gpu_worker.tasks.context import services_of
from gpu_worker.tasks.enqueue import MAX_ATTEMPTS, enqueue_export

log = logging.getLogger(__name__)

LOST_JOB_ERROR = "worker lost"
_WAITING_OR_RUNNING = frozenset({Status.QUEUED, Status.ACTIVE})
_OWNED = frozenset({Status.ACTIVE, Status.ABORTING})
"""A job a worker is running, or has been asked to abort (it does within SAQ's 1 s abort poll and
hands the row back itself; taking the row first would re-run an export somebody just stopped)."""


@dataclass(slots=True)
class ReconcileReport:
    """Export ids handed back to the queue and those failed for good."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def reconcile_exports(ctx: dict[str, Any]) -> dict[str, list[str]]:
    """SAQ cron entry point: both queues, then the re-routing (moved exports count as requeued)."""
    services = services_of(ctx)
    settings = services.settings
    queues = ExportQueues.around(ctx["worker"].queue, services.redis, settings)
    report = ReconcileReport()
    for queue in (queues.cpu, queues.gpu):
        done = await reconcile(
            services.rows,
            queue,
            services.redis,
            stale_after_s=settings.stale_after_s,
            worker_ttl_s=settings.worker_ttl_s,
            pending_after_s=settings.pending_grace_s,
            unrouted=queue is queues.cpu,
        )
        report.requeued += done.requeued
        report.failed += done.failed
    report.requeued += await reroute_waiting(services.rows, queues)
    if report.requeued or report.failed:
        log.warning("reconciler: requeued %s, failed %s", report.requeued, report.failed)
    return {"requeued": report.requeued, "failed": report.failed}


async def reconcile(
    rows: ExportRows,
    queue: Queue,
    redis: Redis,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    stale_after_s: float = STALE_AFTER_S,
    worker_ttl_s: float = WORKER_TTL_S,
    pending_after_s: float = PENDING_GRACE_S,
    unrouted: bool = True,
) -> ReconcileReport:
    """The exports routed to `queue` (and, if `unrouted`, those from before routing, which were
    all on the queue that is now the CPU queue)."""
    report = ReconcileReport()
    live = await _live_worker_ids(redis)
    async for row in rows.idle(ExportStatus.PROCESSING, queue=queue.name, unrouted=unrouted):
        job = await queue.job(str(row.export_id))
        alive = job is not None and job.status in _OWNED and not job.stuck
        if alive and row.idle_s < stale_after_s and not _orphaned(row, live, worker_ttl_s):
            continue
        await take_back(rows, queue, redis, row, job, report, max_attempts=max_attempts)
    async for row in rows.idle(
        ExportStatus.PENDING, idle_s=pending_after_s, queue=queue.name, unrouted=unrouted
    ):
        job = await queue.job(str(row.export_id))
        if job is not None and job.status in _WAITING_OR_RUNNING:
            continue
        if row.attempt >= max_attempts:
            await _fail(rows, redis, row, ExportStatus.PENDING, report)
        elif await enqueue_export(queue, row.export_id) is not None:
            report.requeued.append(str(row.export_id))
    return report


async def take_back(
    rows: ExportRows,
    queue: Queue,
    redis: Redis,
    row: IdleExport,
    job: Job | None,
    report: ReconcileReport,
    *,
    max_attempts: int = MAX_ATTEMPTS,
) -> None:
    """A dead 'processing' attempt: back to 'pending' and re-enqueued, or failed once out of attempts.

    The job is touched only by the run that won the row's conditional update: two reconcilers (one
    per queue) may see the same dead attempt, and the loser's job object may already be the
    winner's fresh job for the next attempt."""
    if row.attempt >= max_attempts:
        if await _fail(rows, redis, row, ExportStatus.PROCESSING, report):
            await _release(queue, job)
    elif await rows.reset_to_pending(row.export_id, row.attempt):
        await _release(queue, job)
        await _announce(redis, row, ExportStatus.PENDING)
        await enqueue_export(queue, row.export_id)
        report.requeued.append(str(row.export_id))


async def _live_worker_ids(redis: Redis) -> frozenset[str] | None:
    """The registry's live worker ids; None when it cannot be read (then only stale_after_s applies)."""
    try:
        return await live_worker_ids(redis)
    except REGISTRY_ERRORS:
        log.warning("reconciler: worker registry unreadable; only STALE_AFTER_S applies", exc_info=True)
        return None


def _orphaned(row: IdleExport, live: frozenset[str] | None, worker_ttl_s: float) -> bool:
    """Its worker's heartbeat expired and the row has not been written for as long: the attempt is dead."""
    if live is None or row.worker_id is None or row.worker_id in live:
        return False
    return row.idle_s >= worker_ttl_s


async def _release(queue: Queue, job: Job | None) -> None:
    """Take a dead attempt's job off the active list, so SAQ's sweeper does not retry it too and its
    key is free for the next attempt's job."""
    if job is not None and job.status in (Status.ACTIVE, Status.ABORTING):
        await queue.finish(job, Status.ABORTED, error=LOST_JOB_ERROR)


async def _fail(
    rows: ExportRows, redis: Redis, row: IdleExport, expected: ExportStatus, report: ReconcileReport
) -> bool:
    error = f"{LOST_JOB_ERROR} ({row.attempt} attempts)"
    if not await rows.fail(row.export_id, row.attempt, error, expected=expected):
        return False
    await _announce(redis, row, ExportStatus.FAILED, error=error)
    report.failed.append(str(row.export_id))
    return True


async def _announce(redis: Redis, row: IdleExport, status: ExportStatus, error: str | None = None) -> None:
    """Tell open progress streams (after the row changed, as every writer does), with the fallback
    the row keeps."""
    message = ProgressMessage(
        export_id=str(row.export_id),
        user_id=str(row.user_id),
        seq=0,
        status=status,
        phase=Phase.QUEUED if status is ExportStatus.PENDING else None,
        fallback_code=row.fallback.code if row.fallback else None,
        fallback_reason=row.fallback.detail if row.fallback else None,
        error=error,
        attempt=row.attempt,
    )
    await publish_progress(redis, message)
