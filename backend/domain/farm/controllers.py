"""Operator API: the live workers (`GET /api/workers`) and remote drain (`POST /api/workers/{id}/drain`).

Both read and write the registry in Redis (gpu_worker.registry); answers are 404 for non-operators.
"""

from __future__ import annotations

import time

from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED

from backend.domain.exports.controllers import RedisDep, provide_redis
from backend.domain.farm.guards import operator_guard
from backend.domain.farm.schemas import WorkerList
from backend.lib.openapi import AUTHENTICATED, problems
from gpu_worker.registry import WorkerInfo, live_workers, request_drain


class WorkerController(Controller):
    path = "/api/workers"
    tags = ["farm"]
    guards = [operator_guard]
    security = AUTHENTICATED
    dependencies = {"redis": Provide(provide_redis, sync_to_thread=False)}

    @get(
        "",
        operation_id="listWorkers",
        description="Every live render worker: host, GPUs, health, current exports, counts, draining.",
        responses=problems(
            400, 401, 503, described={404: "the caller is not an operator (answered like a missing path)"}
        ),
    )
    async def list_workers(self, redis: RedisDep) -> WorkerList:
        return WorkerList(items=await live_workers(redis), now=time.time())

    @post(
        "/{worker_id:str}/drain",
        operation_id="drainWorker",
        status_code=HTTP_202_ACCEPTED,
        description=(
            "Ask a worker to drain: within about 2 s it takes no new jobs and shows `draining`; it "
            "finishes its running exports within its DRAIN_GRACE_S (hands the rest back to the "
            "queue) and exits. Answers 202 with the worker as last seen."
        ),
        responses=problems(
            400,
            401,
            403,
            503,
            described={404: "no live worker with this id, or the caller is not an operator"},
        ),
    )
    async def drain_worker(self, redis: RedisDep, worker_id: FromPath[str]) -> Response[WorkerInfo]:
        worker = await request_drain(redis, worker_id)
        if worker is None:
            raise NotFoundException(f"no live worker {worker_id}")
        return Response(worker, status_code=HTTP_202_ACCEPTED)
