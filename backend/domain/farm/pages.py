"""The operators' page: the live workers, refreshed every 2 s by htmx, with a Drain button each.

Operator only (404 for everyone else). The drain form also works without JavaScript: a plain POST
answers with a redirect back to the page, an htmx one with the refreshed table.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from redis.asyncio import Redis

from backend.domain.exports.controllers import RedisDep, provide_redis
from backend.domain.farm.guards import operator_guard
from backend.lib.deps import CurrentUserDep
from gpu_worker.registry import live_workers, request_drain

TABLE = "partials/workers_table.html"
REFRESH_S = 2


async def _table_context(redis: Redis, **extra: Any) -> dict[str, Any]:
    return {"workers": await live_workers(redis), "now": time.time(), "refresh_s": REFRESH_S, **extra}


class OperatorPages(Controller):
    include_in_schema = False
    guards = [operator_guard]
    dependencies = {"redis": Provide(provide_redis, sync_to_thread=False)}

    @get("/operators")
    async def page(self, redis: RedisDep, current_user: CurrentUserDep) -> Template:
        return Template("operators.html", context=await _table_context(redis, user=current_user))

    @get("/operators/workers")
    async def table(self, redis: RedisDep) -> Template:
        """The table alone: what the page polls."""
        return Template(TABLE, context=await _table_context(redis))

    @post("/operators/workers/{worker_id:str}/drain")
    async def drain(
        self, request: Request[Any, Any, Any], redis: RedisDep, worker_id: FromPath[str]
    ) -> Template | Redirect:
        if await request_drain(redis, worker_id) is None:
            raise NotFoundException(f"no live worker {worker_id}")
        if request.headers.get("hx-request") != "true":
            return Redirect("/operators", status_code=303)
        return Template(TABLE, context=await _table_context(redis, drain_requested=worker_id))
