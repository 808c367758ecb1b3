"""Farm DTOs: the registry's own `WorkerInfo` structs go out as they are, in a list."""

from __future__ import annotations

from backend.lib.schema import Struct
from gpu_worker.registry import WorkerInfo


class WorkerList(Struct):
    """Every worker whose heartbeat has not expired (WORKER_TTL_S), by id; `last_seen` and the
    other times are epoch seconds, and `now` is the server's clock to measure them against."""

    items: list[WorkerInfo]
    now: float
