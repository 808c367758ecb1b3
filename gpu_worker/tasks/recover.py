"""A starting worker hands back at once what a previous incarnation on its host was rendering, and
removes the scratch directories of attempts that no longer run.

After a worker process dies (SIGKILL, OOM, a crash of `vexport serve`), its export stays
'processing' until the reconciler sees the attempt is dead: the worker's registry entry must expire
(WORKER_TTL_S), the row must have been quiet as long, and the cron must come round, about 71 s in
all. The worker that starts next on the same host knows better, since worker ids are
`{hostname}:{pid}` (`:cpu` for `serve`'s second worker; gpu_worker.worker.worker_id): an id with
this host's name whose process no longer runs here is a previous incarnation, and so is an id equal
to the starting worker's own (a container restarted under the same pid), because nothing has been
claimed under it yet.

Never taken: a worker whose process runs here (a slow worker), a worker of another host, and a
worker still heartbeating. A pid missing here proves nothing about a second machine or container
that has the same host name and its own pids, but that worker writes its heartbeat every
WORKER_HEARTBEAT_S; so a predecessor is taken once its heartbeat has been silent for SILENT_BEATS
intervals (measured by Redis, from its key's remaining TTL, so no two clocks are compared). After a
quick restart that is a few seconds off; the wait runs in the background, up to as long as that
takes for a heartbeat written just before start-up, and then leaves anything still heartbeating to
the reconciler.

Scratch: an attempt renders in `<scratch_dir>/<export_id>-<attempt>` (gpu_worker.tasks.export),
and several workers may share the directory. A directory is an attempt that no longer runs unless
its row is 'processing' at that attempt: the directories are listed before the rows are read, and
a worker claims its row before it makes its directory, so a live attempt is always seen running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from gpu_worker.contract import ExportStatus
from gpu_worker.registry import worker_key
from gpu_worker.routing import ExportQueues
from gpu_worker.rows import ExportRows, IdleExport
from gpu_worker.tasks.context import WorkerServices, services_of
from gpu_worker.tasks.reconcile import ReconcileReport, take_back

log = logging.getLogger(__name__)

SILENT_BEATS = 2
"""Heartbeat intervals without a heartbeat after which a predecessor counts as dead."""
RECOVERY_KEY = "start-recovery"
"""In the worker's context: the background wait for predecessors still heartbeating."""
_ATTEMPT_DIR = re.compile(
    r"(?P<export_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(?P<attempt>\d+)"
)


def _runs_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_predecessor(worker_id: str, *, host: str) -> bool:
    """`worker_id` is this host's and its process no longer runs here."""
    name, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    return name == host and pid.isdigit() and not _runs_here(int(pid))


async def silence_s(redis: Redis, worker_id: str, ttl_s: float) -> float:
    """Seconds since `worker_id` last wrote its heartbeat (infinite once its entry expired)."""
    left_ms = await redis.pttl(worker_key(worker_id))
    if left_ms == -2:  # no such key
        return math.inf
    if left_ms < 0:  # a key without expiry is no heartbeat of ours: never silent
        return 0.0
    return ttl_s - left_ms / 1000


def attempt_dirs(root: Path) -> dict[Path, tuple[UUID, int]]:
    """The attempts' scratch directories under `root`, by path; anything else is left out."""
    if not root.is_dir():
        return {}
    found: dict[Path, tuple[UUID, int]] = {}
    for path in root.iterdir():
        match = _ATTEMPT_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found[path] = (UUID(match["export_id"]), int(match["attempt"]))
    return found


async def _processing(rows: ExportRows) -> list[IdleExport]:
    return [row async for row in rows.idle(ExportStatus.PROCESSING)]


async def remove_dead_scratch(root: Path, rows: ExportRows) -> int:
    """Remove the scratch directories of attempts that do not run; returns how many."""
    found = await asyncio.to_thread(attempt_dirs, root)  # listed before the rows are read
    running = {(row.export_id, row.attempt) for row in await _processing(rows)}
    dead = [path for path, attempt in found.items() if attempt not in running]
    for path in dead:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
    return len(dead)


class StartRecovery:
    """What the worker's start-up does before it takes a job; `stop` at shutdown."""

    def __init__(self, ctx: dict[str, Any]) -> None:
        self._ctx = ctx
        self._services: WorkerServices = services_of(ctx)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, ctx: dict[str, Any]) -> StartRecovery:
        """Hand back the silent predecessors' exports, remove dead attempts' scratch, and wait in
        the background for predecessors whose heartbeat is still recent."""
        recovery = cls(ctx)
        try:  # nothing is claimed under this worker's own id yet: what is, a predecessor left
            waiting = await recovery._pass(own_id_is_dead=True)
        except Exception:  # recovery must not keep the worker from starting; the reconciler remains
            log.exception("start-up recovery failed; the reconciler will hand exports back")
            return recovery
        if waiting:
            recovery._task = asyncio.create_task(recovery._wait(), name="start-recovery")
        return recovery

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pass(self, *, own_id_is_dead: bool) -> bool:
        """One round: take back every silent predecessor's exports, then sweep scratch; True while
        a predecessor's heartbeat is too recent to tell."""
        services = self._services
        settings = services.settings
        me, host = services.worker_id, socket.gethostname()
        claimers = {row.worker_id for row in await _processing(services.rows) if row.worker_id}
        dead = {me} & claimers if own_id_is_dead else set()
        predecessors = {w for w in claimers - {me} if is_predecessor(w, host=host)}
        limit = SILENT_BEATS * settings.heartbeat_s
        silent = {
            w for w in predecessors if await silence_s(services.redis, w, settings.worker_ttl_s) >= limit
        }
        dead |= silent
        report = await self._take_back(dead)
        if report.requeued or report.failed:
            log.warning(
                "start-up: took back from %s: requeued %s, failed %s",
                ", ".join(sorted(dead)),
                report.requeued,
                report.failed,
            )
        removed = await remove_dead_scratch(settings.scratch_dir, services.rows)
        if removed:
            log.info("start-up: removed the scratch of %d attempts that no longer run", removed)
        return bool(predecessors - silent)

    async def _take_back(self, dead: set[str]) -> ReconcileReport:
        report = ReconcileReport()
        if not dead:
            return report
        services = self._services
        queues = ExportQueues.around(self._ctx["worker"].queue, services.redis, services.settings)
        for queue in (queues.cpu, queues.gpu):
            unrouted = queue is queues.cpu
            async for row in services.rows.idle(ExportStatus.PROCESSING, queue=queue.name, unrouted=unrouted):
                if row.worker_id in dead:
                    job = await queue.job(str(row.export_id))
                    await take_back(services.rows, queue, services.redis, row, job, report)
        return report

    async def _wait(self) -> None:
        """Look again every half heartbeat interval until every predecessor has fallen silent, for
        as long as one whose last heartbeat came just before start-up takes to."""
        heartbeat_s = self._services.settings.heartbeat_s
        for _ in range(2 * SILENT_BEATS + 1):
            await asyncio.sleep(heartbeat_s / 2)
            try:
                if not await self._pass(own_id_is_dead=False):
                    return
            except Exception:
                log.exception("start-up recovery failed; the reconciler will hand exports back")
                return
