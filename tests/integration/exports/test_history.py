"""GET /api/exports (history) and GET /api/exports/{id}: newest first, keyset pages, filters, owner only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.app import csrf_headers, register
from tests.integration.exports.conftest import Complete, Sql, request_export, upload


async def make_exports(c: AsyncTestClient[Any], video: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        r = await request_export(c, video)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


async def test_history_is_newest_first_in_cursor_pages(api: AsyncTestClient[Any], video_id: str) -> None:
    ids = await make_exports(api, video_id, 5)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/api/exports", params=params)).json()
        assert page["limit"] == 2
        seen += [e["id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert pages == 3


async def test_history_filters_by_status_and_video(
    api: AsyncTestClient[Any], video_id: str, clip: Path, sql: Sql
) -> None:
    first, second = await make_exports(api, video_id, 2)
    other_video = await upload(api, clip)
    third = (await make_exports(api, other_video, 1))[0]
    await sql("UPDATE exports SET status = 'failed', error = 'boom' WHERE id = :id", id=second)

    async def ids(**params: str) -> list[str]:
        r = await api.get("/api/exports", params=params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["items"]]

    assert await ids(status="pending") == [third, first]
    assert await ids(status="failed") == [second]
    assert await ids(video_id=video_id) == [second, first]
    assert await ids(video_id=other_video, status="pending") == [third]
    assert await ids(status="completed") == []


async def test_bad_filters_are_422_naming_the_parameter(api: AsyncTestClient[Any]) -> None:
    r = await api.get("/api/exports", params={"status": "done"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["query.status"]
    r = await api.get("/api/exports", params={"limit": 0})
    assert [e["field"] for e in r.json()["errors"]] == ["query.limit"]
    r = await api.get("/api/exports", params={"cursor": "not-a-cursor"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "query.cursor", "message": "not a cursor"}]


async def test_the_export_shows_the_worker_results(
    api: AsyncTestClient[Any], video_id: str, sql: Sql, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    await sql(
        "UPDATE exports SET encoder_used = 'libx264', fallback_reason = 'no NVIDIA GPU', attempt = 1, "
        "duration = 1.0, started_at = now() WHERE id = :id",
        id=export_id,
    )
    await complete(export_id, b"rendered")
    export = (await api.get(f"/api/exports/{export_id}")).json()
    assert (export["status"], export["progress"], export["size_bytes"], export["duration"]) == (
        "completed",
        100,
        8,
        1.0,
    )
    assert (export["encoder_used"], export["fallback_reason"], export["attempt"]) == (
        "libx264",
        "no NVIDIA GPU",
        1,
    )
    assert export["download_url"] == f"/api/exports/{export_id}/download"
    assert export["started_at"] is not None
    assert export["finished_at"] is not None


async def test_another_users_export_is_404_everywhere_and_never_listed(
    api: AsyncTestClient[Any], export_settings: Settings, video_id: str, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    await complete(export_id, b"rendered")
    async with AsyncTestClient(app=create_app(export_settings)) as other:
        await register(other, "intruder@example.com")
        for path in (f"/api/exports/{export_id}", f"/api/exports/{export_id}/download"):
            r = await other.get(path)
            assert (r.status_code, r.json()["detail"]) == (404, "not found"), path
        r = await other.delete(f"/api/exports/{export_id}", headers=await csrf_headers(other))
        assert (r.status_code, r.json()["detail"]) == (404, "not found")
        assert (await other.get("/api/exports")).json() == {"items": [], "limit": 20, "next_cursor": None}
        assert (await other.get("/api/exports", params={"video_id": video_id})).json()["items"] == []
    assert (await api.get(f"/api/exports/{export_id}")).json()["status"] == "completed"


async def test_anonymous_callers_get_401(export_settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(export_settings)) as c:
        r = await c.get("/api/exports")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_an_api_token_works_without_csrf(
    api: AsyncTestClient[Any], export_settings: Settings, video_id: str
) -> None:
    token = (await api.post("/api/tokens", json={"name": "ci"}, headers=await csrf_headers(api))).json()[
        "token"
    ]
    async with AsyncTestClient(app=create_app(export_settings)) as script:
        bearer = {"authorization": f"Bearer {token}"}
        r = await script.post(f"/api/videos/{video_id}/export", json={}, headers=bearer)
        assert r.status_code == 202, r.text
        assert (await script.get(r.headers["location"], headers=bearer)).json()["segments"] == []
