"""Listing, reading and deleting videos; every id is scoped to its owner (BOLA → 404)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.app import csrf_headers, register
from tests.integration.videos.test_upload import stored_keys, upload


async def test_list_is_newest_first_and_paginated(app_client: AsyncTestClient[Any], clip: Path) -> None:
    ids = [(await upload(app_client, clip, name=f"v{i}.mp4")).json()["id"] for i in range(3)]
    page = (await app_client.get("/api/videos", params={"limit": 2, "offset": 0})).json()
    assert page["total"] == 3
    assert [v["id"] for v in page["items"]] == [ids[2], ids[1]]
    rest = (await app_client.get("/api/videos", params={"limit": 2, "offset": 2})).json()
    assert [v["id"] for v in rest["items"]] == [ids[0]]


async def test_bad_list_parameters_are_422_naming_each_field_like_the_exports_api(
    app_client: AsyncTestClient[Any],
) -> None:
    r = await app_client.get("/api/videos", params={"limit": 1000, "offset": -1})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [
        {"field": "query.limit", "message": "Expected `int` <= 100"},
        {"field": "query.offset", "message": "Expected `int` >= 0"},
    ]


async def test_an_offset_past_what_postgres_can_count_is_422_naming_it(
    app_client: AsyncTestClient[Any],
) -> None:
    r = await app_client.get("/api/videos", params={"offset": 2**63})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "query.offset", "message": f"Expected `int` <= {2**63 - 1}"}]


async def test_get_one_returns_the_same_record(app_client: AsyncTestClient[Any], clip: Path) -> None:
    created = (await upload(app_client, clip)).json()
    r = await app_client.get(f"/api/videos/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created


async def test_delete_removes_the_row_and_the_stored_file(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, clip: Path
) -> None:
    created = (await upload(app_client, clip)).json()
    r = await app_client.delete(f"/api/videos/{created['id']}", headers=await csrf_headers(app_client))
    assert r.status_code == 204
    assert (await app_client.get(f"/api/videos/{created['id']}")).status_code == 404
    assert await stored_keys(any_store_settings) == []


async def test_another_user_gets_404_for_get_and_delete_and_never_sees_it_listed(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, clip: Path
) -> None:
    created = (await upload(app_client, clip)).json()
    async with AsyncTestClient(app=create_app(any_store_settings)) as other:
        await register(other, "intruder@example.com")
        assert (await other.get(f"/api/videos/{created['id']}")).status_code == 404
        r = await other.delete(f"/api/videos/{created['id']}", headers=await csrf_headers(other))
        assert r.status_code == 404
        assert r.json()["detail"] == "not found"
        assert (await other.get("/api/videos")).json() == {"items": [], "total": 0, "limit": 20, "offset": 0}
    assert (await app_client.get(f"/api/videos/{created['id']}")).status_code == 200
    assert len(await stored_keys(any_store_settings)) == 2  # the upload and its list thumbnail


async def test_unknown_id_is_404(app_client: AsyncTestClient[Any]) -> None:
    r = await app_client.get("/api/videos/01890000-0000-7000-8000-000000000000")
    assert r.status_code == 404


async def test_a_token_user_sees_only_their_own_videos(
    app_client: AsyncTestClient[Any], any_store_settings: Settings, clip: Path
) -> None:
    await upload(app_client, clip)
    async with AsyncTestClient(app=create_app(any_store_settings)) as other:
        await register(other, "script@example.com")
        headers = await csrf_headers(other)
        token = (await other.post("/api/tokens", json={"name": "t"}, headers=headers)).json()
    async with AsyncTestClient(app=create_app(any_store_settings)) as script:
        r = await script.get("/api/videos", headers={"authorization": f"Bearer {token['token']}"})
    assert r.json()["total"] == 0
