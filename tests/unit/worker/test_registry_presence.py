"""The worker registry on a real Redis: a worker's heartbeat (written, refreshed, expired, removed),
what readers get from it, remote drain requests, Redis outages, and the job tracker behind it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from gpu_worker.encoders.probe import CodecSupport, GpuInfo, GpuReport
from gpu_worker.queue import redis_client
from gpu_worker.registry import (
    VERSION,
    WORKERS_KEY,
    JobTracker,
    Presence,
    WorkerInfo,
    drain_key,
    find_worker,
    gpu_summaries,
    live_workers,
    request_drain,
    worker_key,
)
from gpu_worker.rows import ExportRows
from gpu_worker.store import StoreSettings, open_store
from gpu_worker.tasks.context import WorkerServices
from gpu_worker.worker import build_worker
from tests.e2e.conftest import RedisServer, eventually
from tests.fixtures.app import worker_settings
from tests.fixtures.live import free_port

HEARTBEAT_S, TTL_S = 0.2, 1.0
CPU_ONLY = GpuReport(driver_present=False, reason="CPU-only worker (--encoder cpu)")
WORKS, NO = CodecSupport(works=True), CodecSupport(works=False, reason="not supported")
TWO_GPUS = GpuReport(
    driver_present=True,
    driver_version="550.54",
    gpus=(
        GpuInfo(
            index=0,
            name="NVIDIA L4",
            memory_mib=23034,
            nvenc={"h264": WORKS, "hevc": WORKS, "av1": WORKS},
            nvdec={"h264": WORKS},
        ),
        GpuInfo(index=1, name="NVIDIA T4", memory_mib=15360, nvenc={"h264": WORKS, "av1": NO}, nvdec={}),
    ),
)

StartPresence = Callable[..., Any]


@pytest.fixture
async def start_presence(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[StartPresence]:
    """`await start_presence(redis_url=..., report=..., gpu=...)`: a worker built by `build_worker`
    (not started) with its registry entry; every one is stopped and its clients closed afterwards."""
    started: list[tuple[Presence, WorkerServices]] = []
    default_redis = redis_url

    async def start(
        redis_url: str = default_redis, report: GpuReport = CPU_ONLY, gpu: int | None = None
    ) -> Presence:
        storage = StoreSettings(backend="local", local_root=tmp_path / "storage", signing_secret="t" * 32)
        queue_name = f"q-{uuid.uuid4().hex[:8]}"
        settings = worker_settings(
            tmp_path,
            database_url,
            redis_url,
            storage,
            queue_name=queue_name,
            heartbeat_s=HEARTBEAT_S,
            worker_ttl_s=TTL_S,
        )
        services = WorkerServices(
            settings=settings,
            worker_id=f"registry-test-{uuid.uuid4().hex[:8]}:{len(started) + 1}",
            store=open_store(storage),
            redis=redis_client(redis_url),
            rows=ExportRows.connect(settings.async_database_url),
            gpu_report=report,
        )
        presence = await Presence.start(services, build_worker(settings), gpu)
        started.append((presence, services))
        return presence

    yield start
    for presence, services in started:
        await presence.stop()
        await services.redis.aclose()
        await services.rows.aclose()
        await services.store.aclose()


async def test_a_started_worker_is_in_the_registry_with_an_expiring_heartbeat(
    start_presence: StartPresence, redis: Redis
) -> None:
    presence = await start_presence()
    info = presence.info()

    found = await find_worker(redis, info.id)
    assert found is not None
    assert (
        found.id,
        found.kind,
        found.gpu_index,
        found.gpus,
        found.version,
        found.healthy,
        found.breaker,
    ) == (
        info.id,
        "cpu",
        None,
        [],
        VERSION,
        True,
        None,
    )
    assert found.id in [w.id for w in await live_workers(redis)]
    assert 0 < await redis.pttl(worker_key(info.id)) <= TTL_S * 1000
    assert await redis.sismember(WORKERS_KEY, info.id)


async def test_the_heartbeat_is_refreshed_every_interval(start_presence: StartPresence, redis: Redis) -> None:
    presence = await start_presence()
    first = await find_worker(redis, presence.info().id)
    assert first is not None

    async def refreshed() -> bool:
        now = await find_worker(redis, first.id)
        return now is not None and now.last_seen > first.last_seen

    await eventually(refreshed, within_s=HEARTBEAT_S * 5, what="the next heartbeat")


async def test_stop_removes_the_entry_at_once(start_presence: StartPresence, redis: Redis) -> None:
    presence = await start_presence()
    worker_id = presence.info().id

    await presence.stop()

    assert await find_worker(redis, worker_id) is None
    assert not await redis.sismember(WORKERS_KEY, worker_id)


async def test_readers_drop_the_ids_whose_heartbeat_expired(redis: Redis) -> None:
    worker_id = f"registry-test-{uuid.uuid4().hex[:8]}:1"
    await redis.sadd(WORKERS_KEY, worker_id)  # left behind by a worker killed after its key expired

    assert worker_id not in [w.id for w in await live_workers(redis)]
    assert not await redis.sismember(WORKERS_KEY, worker_id)


async def test_an_unreadable_heartbeat_is_left_out_of_the_list(
    start_presence: StartPresence, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    good = (await start_presence()).info().id
    bad = f"registry-test-{uuid.uuid4().hex[:8]}:2"
    await redis.set(worker_key(bad), b'{"id": "from another version"}', ex=5)
    await redis.sadd(WORKERS_KEY, bad)
    try:
        ids = [w.id for w in await live_workers(redis)]
    finally:
        await redis.delete(worker_key(bad))
        await redis.srem(WORKERS_KEY, bad)

    assert good in ids
    assert bad not in ids
    assert f"worker {bad}: unreadable heartbeat (another version?); left out" in caplog.messages


async def test_a_drain_request_is_seen_and_the_heartbeat_says_draining(
    start_presence: StartPresence, redis: Redis
) -> None:
    presence = await start_presence()
    worker_id = presence.info().id

    asked = await request_drain(redis, worker_id)

    assert asked is not None
    assert asked.id == worker_id

    async def draining() -> bool:
        info = await find_worker(redis, worker_id)
        return info is not None and info.draining

    await eventually(draining, within_s=2.0, what="the heartbeat to say draining")
    assert await redis.exists(drain_key(worker_id)) == 0, "the request is consumed"


async def test_a_drain_request_for_a_worker_that_is_not_live_is_refused(redis: Redis) -> None:
    worker_id = f"registry-test-{uuid.uuid4().hex[:8]}:9"

    assert await request_drain(redis, worker_id) is None
    assert await redis.exists(drain_key(worker_id)) == 0


async def test_the_heartbeat_survives_a_redis_outage_and_logs_it_once(
    start_presence: StartPresence, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gpu_worker.registry")
    (tmp_path / "redis").mkdir()
    server = RedisServer(free_port(), tmp_path / "redis")
    await server.start()
    try:
        presence = await start_presence(redis_url=server.url)
        worker_id = presence.info().id
        server.kill()

        def failed_once() -> Any:
            return [m for m in caplog.messages if "heartbeat failed" in m]

        async def outage_seen() -> bool:
            return bool(failed_once())

        await eventually(outage_seen, within_s=HEARTBEAT_S * 10, what="a failed heartbeat")
        await asyncio.sleep(HEARTBEAT_S * 5)  # the window itself: several more ticks without Redis
        assert len(failed_once()) == 1

        await server.start()
        client = Redis.from_url(server.url)
        try:

            async def back() -> bool:
                return await find_worker(client, worker_id) is not None

            await eventually(back, within_s=5.0, what="the heartbeat after Redis came back")
        finally:
            await client.aclose()
        assert f"worker {worker_id}: heartbeat written again" in caplog.messages
    finally:
        server.kill()


def test_a_gpu_worker_reports_its_gpus_and_the_nvenc_codecs_of_the_one_it_renders_on() -> None:
    gpus = gpu_summaries(TWO_GPUS)
    info = msgspec.convert(
        {
            **msgspec.to_builtins(_cpu_info()),
            "kind": "gpu",
            "gpu_index": 1,
            "gpus": msgspec.to_builtins(gpus),
        },
        WorkerInfo,
    )

    assert [(g.index, g.name, g.driver, g.memory_mb, g.nvenc_codecs, g.nvdec_codecs) for g in gpus] == [
        (0, "NVIDIA L4", "550.54", 23034, ["av1", "h264", "hevc"], ["h264"]),
        (1, "NVIDIA T4", "550.54", 15360, ["h264"], []),
    ]
    assert info.nvenc_codecs == frozenset({"h264"})
    assert _cpu_info().nvenc_codecs == frozenset()


def _cpu_info() -> WorkerInfo:
    return WorkerInfo(
        id="h:1",
        host="h",
        pid=1,
        version=VERSION,
        started_at=0.0,
        last_seen=0.0,
        queues=["exports"],
        kind="cpu",
        gpu_index=None,
        gpus=gpu_summaries(TWO_GPUS),
        healthy=True,
        breaker=None,
        current=[],
        jobs_done=0,
        jobs_failed=0,
        draining=False,
        concurrency=1,
        nvenc_sessions=1,
    )


async def test_the_tracker_shows_running_exports_and_counts_how_attempts_ended() -> None:
    tracker = JobTracker()
    release = asyncio.Event()

    async def render(outcome: str) -> str:
        await release.wait()
        return outcome

    running = asyncio.create_task(tracker.run("e1", 2, render("completed")))
    await asyncio.sleep(0)
    tracker.progress("e1", 40, 88.5)
    (current,) = tracker.current
    assert (current.export_id, current.attempt, current.percent, current.fps) == ("e1", 2, 40, 88.5)

    release.set()
    assert await running == "completed"
    for outcome in ("failed", "stopped", "skipped"):
        assert await tracker.run("e2", 1, render(outcome)) == outcome
    with pytest.raises(RuntimeError):
        await tracker.run("e3", 1, _raises(RuntimeError("storage down")))
    cancelled = asyncio.create_task(tracker.run("e4", 1, asyncio.Event().wait()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    assert (tracker.done, tracker.failed, tracker.current) == (1, 2, [])


async def _raises(exc: Exception) -> str:
    raise exc
