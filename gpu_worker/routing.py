"""Which queue an export goes to: the GPU queue or the CPU queue (names: WorkerSettings).

`choose_queue` is the pure decision, made when the API records an export (also for a re-run):
- `auto`: the GPU queue while at least one live GPU worker that takes the GPU queue is healthy (its
  circuit breaker is not open), not draining, and whose probe encoded the codec with NVENC; else
  the CPU queue, with the typed reason, which becomes the export's fallback if it renders on the CPU;
- `gpu`: the GPU queue, where it waits at most GPU_WAIT_S for a GPU worker (`reroute_waiting`); when
  no GPU worker for the codec is online the route says so (`waiting`), so the export can tell its
  user at once why it waits and until when;
- `cpu`: the CPU queue.
The row records the queue (`exports.queue_name`) and a worker claims only rows routed to the queue
it took the job from, so moving a row to the other queue is one conditional UPDATE that a late
claim on the old queue cannot race (`ExportRows.reroute`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis
from saq.job import Status
from saq.queue.redis import RedisQueue

from gpu_worker.contract import Codec, EncoderChoice
from gpu_worker.encoders.nvenc import codec_label
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.encoders.select import NVENC_CODECS, no_nvenc_reason
from gpu_worker.fallback import Fallback, FallbackCode, WaitingCode
from gpu_worker.registry import live_workers
from gpu_worker.rows import ExportRows
from gpu_worker.settings import WorkerSettings
from gpu_worker.tasks.enqueue import enqueue_export

log = logging.getLogger(__name__)


class WorkerView(Protocol):
    """What routing reads from a worker's heartbeat (gpu_worker.registry.WorkerInfo)."""

    @property
    def kind(self) -> str: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    @property
    def queues(self) -> Sequence[str]: ...

    @property
    def nvenc_codecs(self) -> Iterable[str]: ...


@dataclass(frozen=True, slots=True)
class Route:
    queue: str
    gpu: bool
    fallback: Fallback | None = None
    """Why an `auto` export goes to the CPU queue; None otherwise."""
    waiting: WaitingCode | None = None
    """Why a `gpu` export may wait up to GPU_WAIT_S on the GPU queue; None when a GPU worker can take it."""


def no_gpu_worker(codec: Codec | str) -> Fallback:
    detail = f"no healthy GPU worker with NVENC {codec_label(str(codec))} is online"
    return Fallback(FallbackCode.NO_GPU_WORKER, detail)


def gpu_wait_expired(wait_s: float) -> Fallback:
    return Fallback(FallbackCode.GPU_WAIT_EXPIRED, f"no GPU worker took the export within {wait_s:g} s")


def takes_gpu_jobs(worker: WorkerView, settings: WorkerSettings) -> bool:
    """A GPU worker that would take a job from the GPU queue now: healthy and not draining."""
    gpu_queue = settings.gpu_queue_name in worker.queues
    return worker.kind == "gpu" and gpu_queue and worker.healthy and not worker.draining


def choose_queue(
    workers: Iterable[WorkerView],
    *,
    codec: Codec | str,
    encoder: EncoderChoice | str,
    settings: WorkerSettings,
) -> Route:
    encoder, codec = EncoderChoice(encoder), Codec(codec)
    gpu, cpu = Route(settings.gpu_queue_name, gpu=True), Route(settings.cpu_queue_name, gpu=False)
    if encoder is EncoderChoice.CPU:
        return cpu
    gpu_online = any(takes_gpu_jobs(worker, settings) and codec in worker.nvenc_codecs for worker in workers)
    if encoder is EncoderChoice.GPU:
        return gpu if gpu_online else Route(gpu.queue, gpu=True, waiting=WaitingCode.NO_GPU_WORKER)
    if (reason := no_nvenc_reason(codec)) is not None:
        return Route(cpu.queue, gpu=False, fallback=Fallback(FallbackCode.CODEC_UNSUPPORTED, reason))
    return gpu if gpu_online else Route(cpu.queue, gpu=False, fallback=no_gpu_worker(codec))


def worker_gpu(report: GpuReport, gpu_index: int | None) -> int | None:
    """The GPU a worker renders on: the first whose NVENC worked in the probe (only `gpu_index`
    when given), or None for a CPU worker."""
    usable = sorted({index for codec in NVENC_CODECS for index in report.nvenc_gpus(codec)})
    if gpu_index is not None:
        usable = [index for index in usable if index == gpu_index]
    return usable[0] if usable else None


def worker_queue(settings: WorkerSettings, gpu: int | None) -> str:
    """The queue a worker takes jobs from: `--queue` when given, else the one of its kind."""
    if settings.worker_queue:
        return settings.worker_queue
    return settings.gpu_queue_name if gpu is not None else settings.cpu_queue_name


@dataclass(frozen=True, slots=True)
class ExportQueues:
    """Both queues, the Redis client the worker registry lives in, and the settings naming them:
    everything that routes or re-routes an export (the API, the reconciler)."""

    cpu: RedisQueue
    gpu: RedisQueue
    redis: Redis
    settings: WorkerSettings = field(repr=False)

    @classmethod
    def around(cls, own: RedisQueue, redis: Redis, settings: WorkerSettings) -> ExportQueues:
        """For a worker: its own queue object, and the other one on the same connection."""

        def named(name: str) -> RedisQueue:
            return own if own.name == name else RedisQueue(own.redis, name=name)

        return cls(named(settings.cpu_queue_name), named(settings.gpu_queue_name), redis, settings)

    async def route(self, codec: Codec | str, encoder: EncoderChoice | str) -> Route:
        workers = await live_workers(self.redis)
        return choose_queue(workers, codec=codec, encoder=encoder, settings=self.settings)

    def of(self, route: Route) -> RedisQueue:
        return self.gpu if route.gpu else self.cpu

    def named(self, queue_name: str | None) -> RedisQueue:
        """The queue a row names; rows from before routing (None) were on QUEUE_NAME, the CPU queue."""
        return self.gpu if queue_name == self.settings.gpu_queue_name else self.cpu


async def reroute_waiting(rows: ExportRows, queues: ExportQueues) -> list[str]:
    """Move pending exports off the GPU queue that no GPU worker will take: `gpu` ones that waited
    GPU_WAIT_S, `auto` ones once no healthy GPU worker for their codec is left. The row moves first
    (conditional on still being pending on the GPU queue), then its GPU job is aborted and a CPU job
    queued; returns the ids moved."""
    settings = queues.settings
    waiting = await rows.waiting(settings.gpu_queue_name)
    if not waiting:
        return []
    workers = await live_workers(queues.redis)
    moved: list[str] = []
    for row in waiting:
        if row.encoder_requested == EncoderChoice.GPU:
            if row.waited_s < settings.gpu_wait_s:
                continue
            fallback = gpu_wait_expired(settings.gpu_wait_s)
        else:
            route = choose_queue(workers, codec=row.codec, encoder=row.encoder_requested, settings=settings)
            if route.gpu:
                continue
            fallback = route.fallback or no_gpu_worker(row.codec)
        gpu_queue, cpu_queue = settings.gpu_queue_name, settings.cpu_queue_name
        if not await rows.reroute(row.export_id, row.attempt, gpu_queue, cpu_queue, fallback):
            continue
        job = await queues.gpu.job(str(row.export_id))
        if job is not None and job.status is Status.QUEUED:
            await queues.gpu.abort(job, f"moved to {cpu_queue}: {fallback.detail}")
        await enqueue_export(queues.cpu, row.export_id)
        log.warning("export %s moved to queue %s: %s", row.export_id, cpu_queue, fallback.detail)
        moved.append(str(row.export_id))
    return moved
