"""How an export job is put on the queue: one place for the API, the reconciler and the tests.

The job carries only the export id (the worker reads the rest from Postgres) and is keyed by it,
so enqueueing an export that already has a queued or running job is a no-op (SAQ answers None).
"""

from __future__ import annotations

from uuid import UUID

from saq import Job, Queue

from gpu_worker.contract import EXPORT_TASK

JOB_TIMEOUT_S = 6 * 3600
"""Hours, not SAQ's 10 s default: a long 4K render must never be cut off by the queue."""
JOB_HEARTBEAT_S = 60
"""The task refreshes its job every HEARTBEAT_INTERVAL_S (15 s), well inside this."""
JOB_RETRIES = 3
MAX_ATTEMPTS = 3
"""Claims per export (the row's `attempt`): after that the reconciler fails it instead of re-queueing."""


async def enqueue_export(queue: Queue, export_id: UUID | str) -> Job | None:
    """Queue the render of `export_id`; None when a job for it is already queued or running."""
    return await queue.enqueue(
        EXPORT_TASK,
        key=str(export_id),
        export_id=str(export_id),
        timeout=JOB_TIMEOUT_S,
        heartbeat=JOB_HEARTBEAT_S,
        retries=JOB_RETRIES,
        retry_delay=5.0,
        retry_backoff=True,
    )
