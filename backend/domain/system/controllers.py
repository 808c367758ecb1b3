"""Liveness and readiness: `/health` says the process answers, `/ready` that its dependencies do."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from sqlalchemy import text

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
        checks = {
            "database": self._database(state),
            "redis": state.redis.ping(),
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

    @staticmethod
    async def _database(state: State) -> None:
        async with state.session_maker() as db:
            await db.execute(text("select 1"))
