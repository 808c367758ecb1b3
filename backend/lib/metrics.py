"""The API's Prometheus `/metrics`: the farm as Postgres and Redis see it, read on every scrape.

- `vexport_exports{status}`: exports by status (one GROUP BY over `exports`), every status listed;
- `vexport_queue_jobs{queue,state}`: jobs queued, active and scheduled (waiting out a retry delay) on
  the GPU and the CPU queue, read from SAQ's Redis keys in one round trip.

What happens inside a worker (render times, fps, encoders, fallbacks, GPU health) is served by each
worker (`vexport worker --metrics-port`), since only that process knows it.

Operators only (the farm's `operator_guard`): a signed-in user who is not one gets the same 404
as for a path that does not exist, an anonymous caller the app's usual 401 (a redirect to the
log-in form, since this is not under /api). Prometheus scrapes with an operator's API token
(`Authorization: Bearer vx_…`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from litestar import Controller, Response, get
from litestar.datastructures import State
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.db import models as m
from backend.domain.farm.guards import operator_guard
from backend.lib.deps import SettingsDep
from gpu_worker.contract import ExportStatus

MEDIA_TYPE = "text/plain; version=0.0.4"
"""The classic text format every Prometheus reads; Litestar appends `; charset=utf-8` itself."""


def saq_key(queue: str, kind: str) -> str:
    """A SAQ 0.26 Redis key (`RedisQueue.namespace`): `queued`/`active` lists, `incomplete` zset."""
    return f"saq:{queue}:{kind}"


async def exports_by_status(session_maker: async_sessionmaker[AsyncSession]) -> GaugeMetricFamily:
    async with session_maker() as db:
        rows = await db.execute(select(m.Export.status, func.count()).group_by(m.Export.status))
        counts = {ExportStatus(status): count for status, count in rows.all()}
    family = GaugeMetricFamily("vexport_exports", "Exports by status", labels=["status"])
    for status in ExportStatus:
        family.add_metric([str(status)], counts.get(status, 0))
    return family


async def queue_depth(redis: Redis, queues: Sequence[str]) -> GaugeMetricFamily:
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(saq_key(queue, "queued"))
            pipe.llen(saq_key(queue, "active"))
            pipe.zcard(saq_key(queue, "incomplete"))
        values = await pipe.execute()
    family = GaugeMetricFamily(
        "vexport_queue_jobs",
        "Jobs on each render queue: queued, active, and scheduled for a later retry",
        labels=["queue", "state"],
    )
    for index, queue in enumerate(queues):
        queued, active, incomplete = values[3 * index : 3 * index + 3]
        family.add_metric([queue, "queued"], queued)
        family.add_metric([queue, "active"], active)
        # SAQ keeps every unfinished job in `incomplete`; the rest of it is waiting for its time.
        family.add_metric([queue, "scheduled"], max(incomplete - queued - active, 0))
    return family


class _Snapshot(Collector):
    """Families gathered (asynchronously) for one scrape, in the shape `generate_latest` takes."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class MetricsController(Controller):
    path = "/metrics"
    guards = [operator_guard]
    include_in_schema = False

    @get(operation_id="metrics", media_type=MEDIA_TYPE)
    async def metrics(self, state: State, settings: SettingsDep) -> Response[bytes]:
        core = settings.core
        families = [
            await exports_by_status(state.session_maker),
            await queue_depth(state.redis, [core.gpu_queue_name, core.cpu_queue_name]),
        ]
        return Response(generate_latest(_Snapshot(families)), media_type=MEDIA_TYPE)
