"""Draining a worker: take no new jobs, let the running ones finish within a grace period, hand
back the rest, stop.

SIGTERM on `vexport worker` and a remote request (`vexport workers drain ID`, seen by the worker's
heartbeat loop in gpu_worker.registry) take the same path, `start_drain(worker, grace_s)`:
1. the queue stops handing out jobs: `DrainableQueue.pause` cancels the dequeues that are waiting
   (slots with no job) and makes every later one wait until the worker stops;
2. the jobs already running get `grace_s` seconds (DRAIN_GRACE_S) to finish;
3. `Worker.stop()` cancels whatever is left: an export attempt hands its row back to 'pending' and
   SAQ re-queues its job (gpu_worker.tasks.export), so another worker renders it.
SAQ's own `shutdown_grace_period_s` is not used: its stop waits on the upkeep loops too (the sweep
loop sleeps 60 s), so it could not end early once the renders are done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from saq import Worker
from saq.job import Job

from gpu_worker.queue import BackoffRedisQueue

log = logging.getLogger(__name__)

DRAIN_KEY = "drain"
"""In the worker's context once draining began: the task that drains it."""


class DrainableQueue(BackoffRedisQueue):
    """The worker's queue, which can stop handing out jobs without stopping the worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused = False
        self._waiting: set[asyncio.Task[Any]] = set()

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109
        if self._paused:
            await asyncio.get_running_loop().create_future()  # until the worker stops and cancels it
        task = asyncio.current_task()
        assert task is not None, "SAQ dequeues in a task"
        self._waiting.add(task)
        try:
            return await super().dequeue(timeout=timeout, poll_interval=poll_interval)
        finally:
            self._waiting.discard(task)

    def pause(self) -> set[asyncio.Task[Any]]:
        """Hand out no more jobs; returns the waiting dequeues' tasks, which it cancels. A job the
        server moved in the instant of the cancel stays on SAQ's active list, where the sweep finds
        it, exactly as when SAQ stops a worker."""
        self._paused = True
        cancelled = set(self._waiting)
        for task in cancelled:
            task.cancel()
        return cancelled


def is_draining(worker: Worker) -> bool:
    return DRAIN_KEY in worker.context


def start_drain(worker: Worker, grace_s: float) -> asyncio.Task[None]:
    """Begin draining `worker`, once: later calls return the same task, which ends when it stopped."""
    task: asyncio.Task[None] | None = worker.context.get(DRAIN_KEY)
    if task is None:
        task = asyncio.create_task(_drain(worker, grace_s), name="drain")
        worker.context[DRAIN_KEY] = task
    return task


async def drain(worker: Worker, grace_s: float) -> None:
    """Drain `worker` and wait until it stopped."""
    await asyncio.shield(start_drain(worker, grace_s))


async def _drain(worker: Worker, grace_s: float) -> None:
    slots = {task for task in worker.tasks if task.get_name() == "process"}
    queue = worker.queue
    idle = queue.pause() if isinstance(queue, DrainableQueue) else set()
    busy = slots - idle
    log.warning("worker %s draining: %d job(s) running, %g s to finish them", worker.id, len(busy), grace_s)
    if busy and grace_s > 0:
        _, unfinished = await asyncio.wait(busy, timeout=grace_s)
        if unfinished:
            log.warning(
                "worker %s: %d job(s) not finished after %g s; handing them back",
                worker.id,
                len(unfinished),
                grace_s,
            )
    await worker.stop()
    log.info("worker %s drained and stopped", worker.id)
