"""Draining a SAQ worker on a real Redis queue: the queue stops handing out jobs (idle slots too),
a running job finishes within the grace period, and one that does not is handed back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from saq import Worker
from saq.job import Job, Status

from gpu_worker.drain import DrainableQueue, is_draining, start_drain
from tests.e2e.conftest import eventually
from tests.fixtures.app import forget_queue

SLOTS = 2
NOT_TAKEN_WITHIN_S = 0.5
"""How long a paused queue is watched to not hand out a queued job."""


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[DrainableQueue]:
    name = f"drain-test-{uuid.uuid4().hex[:8]}"
    q = DrainableQueue.connect_to(redis_url, name)
    yield q
    redis = Redis.from_url(redis_url)
    await forget_queue(redis, name)
    await redis.aclose()
    await q.disconnect()


class Holding:
    """A task that holds its slot until released, like a render."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def run(self, ctx: dict[str, Any]) -> str:
        await self.release.wait()
        return "done"


async def status_of(queue: DrainableQueue, job: Job) -> Status:
    fresh = await queue.job(job.key)
    assert fresh is not None
    return fresh.status


async def running(queue: DrainableQueue, job: Job) -> None:
    async def active() -> bool:
        return await status_of(queue, job) is Status.ACTIVE

    await eventually(active, within_s=5.0, what=f"job {job.key} to run")


async def test_a_paused_queue_cancels_its_waiting_dequeue_and_hands_out_nothing_more(
    queue: DrainableQueue,
) -> None:
    waiting = asyncio.create_task(queue.dequeue())
    await asyncio.sleep(0.1)  # let it reach Redis's blocking pop

    assert queue.pause() == {waiting}
    with pytest.raises(asyncio.CancelledError):
        await waiting
    job = await queue.enqueue("hold")
    assert job is not None
    later = asyncio.create_task(queue.dequeue())
    done, _ = await asyncio.wait({later}, timeout=NOT_TAKEN_WITHIN_S)
    later.cancel()

    assert done == set()
    assert await status_of(queue, job) is Status.QUEUED


async def test_draining_lets_the_running_job_finish_and_leaves_new_ones_queued(queue: DrainableQueue) -> None:
    hold = Holding()
    worker = Worker(queue, functions=[("hold", hold.run)], concurrency=SLOTS)
    started = asyncio.create_task(worker.start())
    first = await queue.enqueue("hold", timeout=0)
    assert first is not None
    await running(queue, first)

    drained = start_drain(worker, grace_s=30)
    assert is_draining(worker)
    assert start_drain(worker, grace_s=30) is drained, "a second request joins the first"
    second = await queue.enqueue("hold", timeout=0)
    assert second is not None
    await asyncio.sleep(NOT_TAKEN_WITHIN_S)  # the window in which an idle slot would take it
    hold.release.set()
    await asyncio.wait_for(drained, 5.0)
    await asyncio.wait_for(started, 5.0)

    assert await status_of(queue, first) is Status.COMPLETE
    assert await status_of(queue, second) is Status.QUEUED


async def test_a_job_still_running_when_the_grace_period_ends_is_handed_back(queue: DrainableQueue) -> None:
    worker = Worker(queue, functions=[("hold", Holding().run)], concurrency=1)
    started = asyncio.create_task(worker.start())
    job = await queue.enqueue("hold", timeout=0)
    assert job is not None
    await running(queue, job)

    await asyncio.wait_for(start_drain(worker, grace_s=0.2), 5.0)
    await asyncio.wait_for(started, 5.0)

    assert await status_of(queue, job) is Status.QUEUED
