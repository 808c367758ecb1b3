"""A starting worker takes back at once what a killed worker of its host was rendering (instead of
the reconciler's ~71 s), and never what a worker that may be alive holds: one whose process runs
here, one of another host, or one still heartbeating (another machine with the same host name)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from saq import Worker

from gpu_worker.contract import ExportStatus, RenderRequest
from gpu_worker.registry import worker_key
from gpu_worker.settings import WorkerSettings
from gpu_worker.tasks.recover import SILENT_BEATS
from gpu_worker.worker import build_worker, worker_id
from tests.integration.jobs.farm import Farm
from tests.integration.jobs.test_reconcile_registry import claimed_export
from tests.media import MadeVideo

HOST = socket.gethostname()
HEARTBEAT_S = 0.5
"""The workers' heartbeat in these tests: a predecessor is silent after SILENT_BEATS of them."""
DONE_WITHIN_S = 20.0


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def fast_heartbeat(settings: WorkerSettings) -> WorkerSettings:
    return replace(settings, heartbeat_s=HEARTBEAT_S)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.start())
    try:
        yield
    finally:
        await worker.stop()
        await task


async def wait_for_attempt(farm: Farm, export_id: uuid.UUID, attempt: int) -> float:
    """Poll until the row is at `attempt`; the monotonic time it was seen there."""
    async with asyncio.timeout(DONE_WITHIN_S):
        while True:
            if (await farm.row(export_id))["attempt"] >= attempt:
                return time.monotonic()
            await asyncio.sleep(0.05)


async def heartbeat_now(farm: Farm, worker: str) -> None:
    await farm.redis.set(worker_key(worker), b"{}", px=int(farm.settings.worker_ttl_s * 1000))


async def test_an_export_of_a_killed_worker_of_this_host_is_rendered_again_as_the_next_worker_starts(
    farm: Farm, clip: MadeVideo
) -> None:
    export_id = await claimed_export(farm, clip, f"{HOST}:{dead_pid()}", quiet_s=1)

    await farm.run_worker()  # a burst worker: it ends once the queue is empty

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"]) == (ExportStatus.COMPLETED, 2, worker_id())


async def test_an_export_claimed_under_the_starting_workers_own_id_is_rendered_again(
    farm: Farm, clip: MadeVideo
) -> None:
    """A container restarted under the same pid gets the same id as the worker it replaces."""
    export_id = await claimed_export(farm, clip, worker_id(), quiet_s=1)

    await farm.run_worker()

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"]) == (ExportStatus.COMPLETED, 2)


async def test_a_killed_worker_with_a_recent_heartbeat_is_taken_back_once_it_has_been_silent(
    farm: Farm, clip: MadeVideo
) -> None:
    dead = f"{HOST}:{dead_pid()}"
    export_id = await claimed_export(farm, clip, dead, quiet_s=1)
    await heartbeat_now(farm, dead)
    last_beat = time.monotonic()

    async with running(build_worker(fast_heartbeat(farm.settings), dequeue_timeout=0.2)):
        claimed_again = await wait_for_attempt(farm, export_id, 2)

    assert claimed_again - last_beat >= SILENT_BEATS * HEARTBEAT_S
    assert claimed_again - last_beat < SILENT_BEATS * HEARTBEAT_S + 5.0


@pytest.mark.parametrize(
    "holder",
    [f"{HOST}:{os.getpid()}:another-worker", "another-host:4242"],
    ids=["a process that runs here", "another host"],
)
async def test_an_export_of_a_worker_that_may_be_alive_is_left_alone(
    farm: Farm, clip: MadeVideo, holder: str
) -> None:
    export_id = await claimed_export(farm, clip, holder, quiet_s=1)

    await farm.run_worker()

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"]) == (ExportStatus.PROCESSING, 1, holder)


async def test_a_worker_of_a_host_with_the_same_name_that_keeps_heartbeating_is_left_alone(
    farm: Farm, clip: MadeVideo
) -> None:
    """Its pid is not running here, but it runs elsewhere: its heartbeat says so."""
    elsewhere = f"{HOST}:{dead_pid()}"
    export_id = await claimed_export(farm, clip, elsewhere, quiet_s=1)

    async def keep_beating() -> None:
        while True:
            await heartbeat_now(farm, elsewhere)
            await asyncio.sleep(HEARTBEAT_S)

    beating = asyncio.create_task(keep_beating())
    try:
        async with running(build_worker(fast_heartbeat(farm.settings), dequeue_timeout=0.2)):
            await asyncio.sleep((2 * SILENT_BEATS + 2) * HEARTBEAT_S)  # past the start-up wait
    finally:
        beating.cancel()
        await farm.redis.delete(worker_key(elsewhere))

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"]) == (ExportStatus.PROCESSING, 1, elsewhere)


def attempt_dir(farm: Farm, export_id: uuid.UUID, attempt: int) -> Path:
    path = farm.settings.scratch_dir / f"{export_id}-{attempt}"
    path.mkdir(parents=True)
    (path / "output.mp4").write_bytes(b"partial")
    return path


async def test_at_start_the_scratch_of_attempts_that_no_longer_run_is_removed_and_live_ones_stay(
    farm: Farm, clip: MadeVideo
) -> None:
    live = await claimed_export(farm, clip, "another-host:4242", quiet_s=1)
    await farm.sql("UPDATE exports SET attempt = 2 WHERE id = :id", id=live)
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    failed = await farm.add_export(user_id, video_id, RenderRequest(), status="failed", attempt=1)
    live_attempt = attempt_dir(farm, live, 2)
    earlier_attempt = attempt_dir(farm, live, 1)
    failed_attempt = attempt_dir(farm, failed, 1)
    deleted_export = attempt_dir(farm, uuid.uuid4(), 1)
    not_an_attempt = farm.settings.scratch_dir / "notes.txt"
    not_an_attempt.write_text("left to the age sweep")

    await farm.run_worker()

    assert live_attempt.exists()
    assert not_an_attempt.exists()
    assert [p.exists() for p in (earlier_attempt, failed_attempt, deleted_export)] == [False, False, False]
