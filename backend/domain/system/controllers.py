"""Liveness and readiness: `/health` says the process answers, `/ready` that its dependencies do.

`/ready` opens a new connection to Postgres and to Redis for each check rather than asking the
pools: a pooled connection can outlive the server's readiness to take new ones (a second
redis-server that took over the socket path left the old one answering the old connection), and
then the check said "ok" while every new client failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.db.hotpath import connect_options

READY_TIMEOUT_S = 3.0


class SystemController(Controller):
    tags = ["system"]

    @get("/health", operation_id="health", exclude_from_csrf=True)
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        operation_id="ready",
        responses={
            503: ResponseSpec(
                dict[str, Any],
                description="a dependency does not answer: `checks` names it",
                generate_examples=False,
            )
        },
    )
    async def ready(self, state: State) -> Response[dict[str, Any]]:
        core = state.settings.core
        checks = {
            "database": _database(core.async_database_url),
            "redis": _redis(core.redis_url or ""),
            "storage": state.store.check(),
        }
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check, READY_TIMEOUT_S)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"error: {type(exc).__name__}: {exc}"[:200]
        ok = all(v == "ok" for v in results.values())
        return Response(
            {"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503
        )


async def _database(async_database_url: str) -> None:
    connection = await asyncpg.connect(**connect_options(async_database_url), timeout=READY_TIMEOUT_S)
    try:
        await connection.fetchval("select 1")
    finally:
        await connection.close(timeout=READY_TIMEOUT_S)


async def _redis(url: str) -> None:
    client = Redis.from_url(
        url,
        socket_connect_timeout=READY_TIMEOUT_S,
        socket_timeout=READY_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
