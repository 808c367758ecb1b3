"""The worker registry: each worker's heartbeat in Redis, and what the API, the CLI and routing read.

A worker writes its `WorkerInfo` (JSON) to `vexport:worker:{id}` every WORKER_HEARTBEAT_S with an
expiry of WORKER_TTL_S and keeps its id in the `vexport:workers` set. A worker that dies stops
writing and its key expires, so no clean-up job is needed: `live_workers` reads the set, drops the
ids whose key is gone and returns the rest. A clean shutdown deletes the key at once.

Rendering does not need Redis, so the heartbeat never takes the worker down: a failed write is
logged once per outage and tried again on the next tick.

Remote drain rides on the same loop: `request_drain` sets `vexport:drain:{id}`; the worker checks
for it every DRAIN_POLL_S, consumes it and drains (gpu_worker.drain), and its next heartbeat, sent at
once, says `draining`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from saq import Worker

from gpu_worker.drain import is_draining, start_drain
from gpu_worker.encoders.probe import GpuReport

if TYPE_CHECKING:
    from gpu_worker.tasks.context import WorkerServices

log = logging.getLogger(__name__)

WORKERS_KEY = "vexport:workers"
PRESENCE_KEY = "presence"
"""In the worker's context: its `Presence`, stopped by the worker's shutdown."""
DRAIN_POLL_S = 1.0
"""How often a worker looks for a drain request: it starts draining within about this long."""
DRAIN_REQUEST_TTL_S = 600
"""A drain request for a worker that died before seeing it does not outlive it by more than this."""


def _version() -> str:
    try:
        return version("video-export")
    except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
        return "unknown"


VERSION = _version()
REGISTRY_ERRORS = (RedisError, OSError)


def worker_key(worker_id: str) -> str:
    return f"vexport:worker:{worker_id}"


def drain_key(worker_id: str) -> str:
    return f"vexport:drain:{worker_id}"


class GpuSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU as the worker's start-up probe saw it; codecs are those whose session really worked."""

    index: int
    name: str
    driver: str | None
    memory_mb: int | None
    nvenc_codecs: list[str]
    nvdec_codecs: list[str]


class CurrentExport(msgspec.Struct, kw_only=True):
    """An export attempt this worker is running; `percent` and `fps` follow its render."""

    export_id: str
    attempt: int
    percent: int = 0
    fps: float | None = None
    started_at: float


class WorkerInfo(msgspec.Struct, kw_only=True):
    """A worker's heartbeat. Times are epoch seconds; `kind` is "gpu" for a worker that renders on
    a GPU (`gpu_index`) and "cpu" otherwise; `healthy` and `breaker` come from its GPU's circuit
    breaker (a CPU worker is always healthy); `current` lists the exports it renders now."""

    id: str
    host: str
    pid: int
    version: str
    started_at: float
    last_seen: float
    queues: list[str]
    kind: Literal["gpu", "cpu"]
    gpu_index: int | None
    gpus: list[GpuSummary]
    healthy: bool
    breaker: dict[str, Any] | None
    current: list[CurrentExport]
    jobs_done: int
    jobs_failed: int
    draining: bool
    concurrency: int
    nvenc_sessions: int

    @property
    def nvenc_codecs(self) -> frozenset[str]:
        """The codecs this worker can encode with NVENC: those of the GPU it renders on."""
        return frozenset(
            codec for gpu in self.gpus if gpu.index == self.gpu_index for codec in gpu.nvenc_codecs
        )


_decoder = msgspec.json.Decoder(WorkerInfo)


def gpu_summaries(report: GpuReport) -> list[GpuSummary]:
    return [
        GpuSummary(
            index=gpu.index,
            name=gpu.name,
            driver=report.driver_version,
            memory_mb=gpu.memory_mib,
            nvenc_codecs=sorted(codec for codec, s in gpu.nvenc.items() if s.works),
            nvdec_codecs=sorted(codec for codec, s in gpu.nvdec.items() if s.works),
        )
        for gpu in report.gpus
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _heartbeats(redis: Redis) -> dict[str, bytes]:
    """Every unexpired heartbeat by worker id, in id order; ids whose key expired leave the set."""
    ids = sorted(_text(member) for member in await redis.smembers(WORKERS_KEY))  # type: ignore[misc]
    if not ids:
        return {}
    values = await redis.mget([worker_key(i) for i in ids])
    gone = [i for i, value in zip(ids, values, strict=True) if value is None]
    if gone:
        await redis.srem(WORKERS_KEY, *gone)  # type: ignore[misc]
    return {ident: value for ident, value in zip(ids, values, strict=True) if value is not None}


async def live_workers(redis: Redis) -> list[WorkerInfo]:
    """Every worker whose heartbeat has not expired, by id (unreadable heartbeats left out)."""
    found = (_decode(ident, value) for ident, value in (await _heartbeats(redis)).items())
    return [worker for worker in found if worker is not None]


async def live_worker_ids(redis: Redis) -> frozenset[str]:
    """The ids of every worker whose heartbeat has not expired, also those this version cannot
    decode: the reconciler must not take a live worker's export because of a rolling upgrade."""
    return frozenset(await _heartbeats(redis))


async def find_worker(redis: Redis, worker_id: str) -> WorkerInfo | None:
    """One live worker, or None when there is no such worker or its heartbeat expired."""
    value = await redis.get(worker_key(worker_id))
    return None if value is None else _decode(worker_id, value)


def _decode(worker_id: str, value: bytes) -> WorkerInfo | None:
    try:
        return _decoder.decode(value)
    except msgspec.DecodeError:
        log.warning("worker %s: unreadable heartbeat (another version?); left out", worker_id)
        return None


async def request_drain(redis: Redis, worker_id: str) -> WorkerInfo | None:
    """Ask a live worker to drain; the worker as last seen, or None when it is not alive."""
    worker = await find_worker(redis, worker_id)
    if worker is not None:
        await redis.set(drain_key(worker_id), b"1", ex=DRAIN_REQUEST_TTL_S)
    return worker


class JobTracker:
    """What this worker renders now and how its attempts ended: the export task reports here, the
    heartbeat reads it. Only the event loop touches it, so it needs no lock."""

    def __init__(self) -> None:
        self._current: dict[str, CurrentExport] = {}
        self.done = 0
        self.failed = 0

    @property
    def current(self) -> list[CurrentExport]:
        return list(self._current.values())

    async def run(self, export_id: str, attempt: int, work: Awaitable[str]) -> str:
        """Await one attempt; 'completed' counts as done, 'failed' or an exception as failed, and a
        cancel (drain, abort, shutdown) or a stop (cancelled, taken over) as neither."""
        self._current[export_id] = CurrentExport(export_id=export_id, attempt=attempt, started_at=time.time())
        try:
            outcome = await work
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed += 1
            raise
        finally:
            del self._current[export_id]
        if outcome == "completed":
            self.done += 1
        elif outcome == "failed":
            self.failed += 1
        return outcome

    def progress(self, export_id: str, percent: int, fps: float | None) -> None:
        if (entry := self._current.get(export_id)) is not None:
            entry.percent, entry.fps = percent, fps


class Presence:
    """A worker's registry entry, refreshed by a background task that also listens for drain
    requests. `start` writes the first heartbeat before returning; `stop` removes the entry."""

    def __init__(self, services: WorkerServices, worker: Worker, gpu_index: int | None) -> None:
        self._services = services
        self._worker = worker
        self._gpu_index = gpu_index
        self._id = services.worker_id
        self._interval_s = services.settings.heartbeat_s
        self._ttl_ms = int(services.settings.worker_ttl_s * 1000)
        self._started_at = time.time()
        self._gpus = gpu_summaries(services.gpu_report)
        self._task: asyncio.Task[None] | None = None
        self._outage = False
        self._shown_draining = False

    @classmethod
    async def start(cls, services: WorkerServices, worker: Worker, gpu_index: int | None) -> Presence:
        """`gpu_index`: the GPU this worker renders on, None for a CPU worker."""
        presence = cls(services, worker, gpu_index)
        await presence._tick(beat=True)
        presence._task = asyncio.create_task(presence._run(), name=f"presence {presence._id}")
        return presence

    def info(self) -> WorkerInfo:
        services, worker = self._services, self._worker
        breaker = services.breaker
        return WorkerInfo(
            id=self._id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=VERSION,
            started_at=self._started_at,
            last_seen=time.time(),
            queues=[worker.queue.name],
            kind="cpu" if self._gpu_index is None else "gpu",
            gpu_index=self._gpu_index,
            gpus=self._gpus,
            healthy=breaker is None or breaker.healthy,
            breaker=None if breaker is None else breaker.describe(),
            current=services.jobs.current,
            jobs_done=services.jobs.done,
            jobs_failed=services.jobs.failed,
            draining=is_draining(worker),
            concurrency=worker.concurrency,
            nvenc_sessions=services.settings.nvenc_sessions,
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with self._services.redis.pipeline(transaction=True) as pipe:
                await pipe.delete(worker_key(self._id)).srem(WORKERS_KEY, self._id).execute()
        except REGISTRY_ERRORS:
            log.warning("worker %s: registry entry not removed (Redis); it expires by itself", self._id)

    async def _run(self) -> None:
        next_beat = time.monotonic() + self._interval_s
        while True:
            await asyncio.sleep(min(DRAIN_POLL_S, self._interval_s))
            beat = time.monotonic() >= next_beat
            if await self._tick(beat):
                next_beat = time.monotonic() + self._interval_s

    async def _tick(self, beat: bool) -> bool:
        """Look for a drain request, then heartbeat if due or if draining began (by request or by
        SIGTERM); True once a heartbeat went out. Redis errors are logged once per outage, not raised."""
        redis = self._services.redis
        try:
            if not is_draining(self._worker) and await redis.delete(drain_key(self._id)):
                log.warning("worker %s: drain requested through the registry", self._id)
                start_drain(self._worker, self._services.settings.drain_grace_s)
            if beat or is_draining(self._worker) != self._shown_draining:
                info = self.info()
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.set(worker_key(self._id), msgspec.json.encode(info), px=self._ttl_ms)
                    pipe.sadd(WORKERS_KEY, self._id)
                    await pipe.execute()
                self._shown_draining, beat = info.draining, True
        except REGISTRY_ERRORS as exc:
            if not self._outage:
                self._outage = True
                log.warning("worker %s: heartbeat failed (%s); retrying every tick", self._id, exc)
            return False
        if self._outage:
            self._outage = False
            log.warning("worker %s: heartbeat written again", self._id)
        return beat


async def stop_presence(ctx: dict[str, Any]) -> None:
    """The worker's shutdown: stop heartbeating and leave the registry (no-op before start-up)."""
    presence: Presence | None = ctx.pop(PRESENCE_KEY, None)
    if presence is not None:
        await presence.stop()
