"""POST /api/exports/{id}/cancel: stop a render and keep its history row (DELETE also removes it)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from saq.job import Status
from saq.queue.redis import RedisQueue

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.app import csrf_headers, register
from tests.integration.exports.conftest import Complete, request_export


async def cancel(c: AsyncTestClient[Any], export_id: str) -> Any:
    return await c.post(f"/api/exports/{export_id}/cancel", headers=await csrf_headers(c))


async def test_cancel_answers_202_with_the_export_now_cancelled(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]

    r = await cancel(api, export_id)

    assert r.status_code == 202
    assert (r.json()["id"], r.json()["status"]) == (export_id, "cancelled")
    assert r.json()["finished_at"] is not None


async def test_cancel_keeps_the_export_in_history(api: AsyncTestClient[Any], video_id: str) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]

    await cancel(api, export_id)

    assert (await api.get(f"/api/exports/{export_id}")).json()["status"] == "cancelled"
    assert [e["id"] for e in (await api.get("/api/exports")).json()["items"]] == [export_id]


async def test_cancel_aborts_the_queued_job(
    api: AsyncTestClient[Any], video_id: str, queue: RedisQueue
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]

    await cancel(api, export_id)

    job = await queue.job(export_id)
    assert job is not None
    assert (job.status, job.error) == (Status.ABORTED, "cancelled")


async def test_cancelling_a_cancelled_export_again_answers_it_unchanged(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    first = (await cancel(api, export_id)).json()

    r = await cancel(api, export_id)

    assert (r.status_code, r.json()) == (202, first)


async def test_cancelling_a_finished_export_is_409_problem_json(
    api: AsyncTestClient[Any], video_id: str, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    await complete(export_id, b"rendered")

    r = await cancel(api, export_id)

    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "export already finished (status: completed)"
    assert (await api.get(f"/api/exports/{export_id}")).json()["status"] == "completed"


async def test_cancelling_another_users_export_is_404_and_leaves_it_running(
    api: AsyncTestClient[Any], export_settings: Settings, video_id: str
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    async with AsyncTestClient(app=create_app(export_settings)) as other:
        await register(other, "intruder@example.com")

        r = await cancel(other, export_id)

    assert (r.status_code, r.json()["detail"]) == (404, "not found")
    assert (await api.get(f"/api/exports/{export_id}")).json()["status"] == "pending"
