"""`vexport workers`: the live workers as a terminal table, and `vexport workers drain ID`.

Both talk to the registry in Redis only (REDIS_URL), so they work from any machine of the farm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import click
from redis.asyncio import Redis

from backend.lib.settings import Settings
from gpu_worker.registry import WorkerInfo, find_worker, live_workers, request_drain

T = TypeVar("T")
DRAIN_WAIT_POLL_S = 0.5
COLUMNS = ("ID", "HOST", "KIND", "GPU", "HEALTH", "CURRENT", "DONE/FAILED", "LAST SEEN", "DRAINING")


def registry_url(settings: Settings) -> str:
    """REDIS_URL, else the socket of the embedded Redis that `vexport serve` runs under the data dir
    (backend/embedded.py; starting a second one there would take its socket away)."""
    if settings.core.redis_url:
        return settings.core.redis_url
    socket = settings.core.data_dir / "redis" / "redis.sock"
    if socket.exists():
        return f"unix://{socket}"
    raise click.ClickException("REDIS_URL is not set and no `vexport serve` runs under VEXPORT_DATA_DIR")


async def on_registry(settings: Settings, read: Callable[[Redis], Awaitable[T]]) -> T:
    redis = Redis.from_url(registry_url(settings))
    try:
        return await read(redis)
    finally:
        await redis.aclose()


def _gpu(worker: WorkerInfo) -> str:
    for gpu in worker.gpus:
        if gpu.index == worker.gpu_index:
            return f"{gpu.index} {gpu.name}"
    return "-"


def _health(worker: WorkerInfo) -> str:
    if worker.healthy:
        return "ok"
    state = worker.breaker.get("state") if worker.breaker else None
    return f"unhealthy ({state})" if state else "unhealthy"


def _current(worker: WorkerInfo) -> str:
    parts = []
    for job in worker.current:
        fps = f" {job.fps:.1f} fps" if job.fps else ""
        parts.append(f"{job.export_id} #{job.attempt} {job.percent}%{fps}")
    return ", ".join(parts) or "-"


def workers_table(workers: Sequence[WorkerInfo], now: float) -> str:
    """One row per worker under a header, columns padded to their widest cell."""
    rows = [COLUMNS] + [
        (
            w.id,
            w.host,
            w.kind,
            _gpu(w),
            _health(w),
            _current(w),
            f"{w.jobs_done}/{w.jobs_failed}",
            f"{max(0.0, now - w.last_seen):.0f}s ago",
            "yes" if w.draining else "no",
        )
        for w in workers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@click.group(invoke_without_command=True)
@click.pass_context
def workers_command(ctx: click.Context) -> None:
    """The render workers whose heartbeat is live (id, host, kind, GPU, health, current export with
    percent and fps, jobs done/failed, last seen, draining); `drain ID` takes one out of service."""
    if ctx.invoked_subcommand is None:
        found = asyncio.run(on_registry(Settings.from_env(), live_workers))
        click.echo(workers_table(found, time.time()) if found else "no live workers")


@workers_command.command("drain")
@click.argument("worker_id")
@click.option("--wait", is_flag=True, help="Return only once the worker has stopped (its heartbeat is gone).")
def drain_command(worker_id: str, wait: bool) -> None:
    """Ask a worker to drain: within about 2 s it takes no new jobs; it finishes the running ones
    within its DRAIN_GRACE_S (handing back the rest to the queue), then exits 0."""
    settings = Settings.from_env()
    if asyncio.run(on_registry(settings, lambda redis: request_drain(redis, worker_id))) is None:
        raise click.ClickException(f"no live worker {worker_id} (see `vexport workers`)")
    click.echo(f"drain requested: {worker_id}")
    if wait:

        async def stopped(redis: Redis) -> None:
            while True:  # polled: the heartbeat key expiring is not an event Redis sends here
                if await find_worker(redis, worker_id) is None:
                    return
                await asyncio.sleep(DRAIN_WAIT_POLL_S)

        asyncio.run(on_registry(settings, stopped))
        click.echo(f"stopped: {worker_id}")
