"""What the worker's startup puts into SAQ's ctx for every task: the clients a render attempt uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from gpu_worker.breaker import CircuitBreaker, NvencSessions
from gpu_worker.encoders.base import Backend
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.encoders.select import Selection
from gpu_worker.registry import JobTracker
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
    breaker: CircuitBreaker | None = None
    """This worker's GPU's circuit breaker (also ctx[BREAKER_KEY]); None on a CPU worker."""
    sessions: NvencSessions | None = None
    build_backend: Callable[[Selection], Backend] = Selection.backend
    """How a render's backend is built; tests put a failing GPU here."""
    jobs: JobTracker = field(default_factory=JobTracker)
    """The exports this worker renders now and its done/failed counts (the registry's heartbeat)."""


def services_of(ctx: dict[str, Any]) -> WorkerServices:
    services: WorkerServices = ctx[CTX_KEY]
    return services
