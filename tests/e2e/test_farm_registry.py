"""The worker registry with real `vexport worker` processes (CPU) on one Redis and Postgres: their
heartbeats, the `vexport workers` table, and a killed worker's expiry and re-run export."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gpu_worker.registry import VERSION, WorkerInfo, live_workers
from tests.e2e.conftest import Deploy, Deployment, eventually
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

HEARTBEAT_S, TTL_S = 0.5, 2.0
FAST_REGISTRY = {"WORKER_HEARTBEAT_S": str(HEARTBEAT_S), "WORKER_TTL_S": str(TTL_S)}
RECONCILING = {**FAST_REGISTRY, "RECONCILE_CRON": "* * * * * *"}
"""The reconciler every second, with the production STALE_AFTER_S (600 s): a killed worker's export
is re-run within seconds only because its heartbeat expired (TTL_S) and its row went unwritten as long."""
CPU = ("--encoder", "cpu")
HOST = socket.gethostname()


async def registered(app: Deployment) -> dict[int, WorkerInfo]:
    """This deployment's live workers (the test Redis is shared) by pid."""
    return {w.pid: w for w in await live_workers(app.redis) if app.queue_name in w.queues}


async def worker_id_of(db: AsyncEngine, export_id: str) -> str | None:
    async with db.connect() as conn:
        value: str | None = await conn.scalar(
            text("SELECT worker_id FROM exports WHERE id = :id"), {"id": uuid.UUID(export_id)}
        )
        return value


async def test_two_workers_heartbeat_into_the_registry_and_vexport_workers_lists_both(deploy: Deploy) -> None:
    app = await deploy()
    first = await app.start_worker(*CPU, env=FAST_REGISTRY)
    second = await app.start_worker(*CPU, env=FAST_REGISTRY)

    seen = await registered(app)
    assert sorted(seen) == sorted([first.pid, second.pid])
    for worker in (first, second):
        info = seen[worker.pid]
        assert (info.id, info.host, info.version, info.kind, info.queues, info.gpu_index, info.gpus) == (
            f"{HOST}:{worker.pid}",
            HOST,
            VERSION,
            "cpu",
            [app.queue_name],
            None,
            [],
        )
        assert (
            info.healthy,
            info.breaker,
            info.current,
            info.jobs_done,
            info.jobs_failed,
            info.draining,
        ) == (
            True,
            None,
            [],
            0,
            0,
            False,
        )
        assert info.concurrency == 1
        assert info.started_at <= info.last_seen <= time.time()

    async def both_beat_again() -> bool:
        now = await registered(app)
        return all(now[pid].last_seen > seen[pid].last_seen for pid in seen if pid in now)

    await eventually(both_beat_again, within_s=HEARTBEAT_S * 4, what="a second heartbeat from each worker")

    listed = await asyncio.to_thread(app.vexport, "workers")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "ID",
        "HOST",
        "KIND",
        "GPU",
        "HEALTH",
        "CURRENT",
        "DONE/FAILED",
        "LAST",
        "SEEN",
        "DRAINING",
    ]
    for worker in (first, second):
        (row,) = [r for r in rows if r.startswith(f"{HOST}:{worker.pid} ")]
        cells = row.split()
        assert cells[1:7] == [HOST, "cpu", "-", "ok", "-", "0/0"]
        assert cells[-1] == "no"


async def test_a_killed_worker_expires_from_the_registry_and_the_other_renders_its_export_as_attempt_two(
    deploy: Deploy, long_source: MadeVideo, db_engine: AsyncEngine
) -> None:
    app = await deploy()
    workers = [await app.start_worker(*CPU, env=RECONCILING) for _ in range(2)]
    export_id = (await app.export(await app.upload(long_source), {"resolution": "360p"}))["id"]
    await app.rendering(export_id)
    claimed_by = await worker_id_of(db_engine, export_id)
    (doomed,) = [w for w in workers if claimed_by == f"{HOST}:{w.pid}"]
    (survivor,) = [w for w in workers if w is not doomed]

    doomed.kill()
    killed = time.monotonic()

    async def expired() -> bool:
        return doomed.pid not in await registered(app)

    await eventually(expired, within_s=TTL_S + 1, what="the killed worker's heartbeat to expire")
    assert time.monotonic() - killed > TTL_S - 2 * HEARTBEAT_S
    assert survivor.pid in await registered(app)
    export = await app.finished(export_id)
    assert (export["status"], export["attempt"], export["error"]) == ("completed", 2, None)
    assert await worker_id_of(db_engine, export_id) == f"{HOST}:{survivor.pid}"

    async def counted() -> bool:
        info = (await registered(app)).get(survivor.pid)
        return info is not None and (info.jobs_done, info.jobs_failed, info.current) == (1, 0, [])

    await eventually(counted, within_s=HEARTBEAT_S * 4, what="the survivor's heartbeat to count the job")
