"""What the worker's startup puts into SAQ's ctx for every task: the clients a render attempt uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gpu_worker.encoders.probe import GpuReport
from gpu_worker.rows import ExportRows
from gpu_worker.settings import WorkerSettings
from gpu_worker.store import Store

CTX_KEY = "services"


@dataclass(frozen=True, slots=True)
class WorkerServices:
    settings: WorkerSettings
    worker_id: str
    store: Store
    redis: Redis
    rows: ExportRows
    gpu_report: GpuReport


def services_of(ctx: dict[str, Any]) -> WorkerServices:
    services: WorkerServices = ctx[CTX_KEY]
    return services
