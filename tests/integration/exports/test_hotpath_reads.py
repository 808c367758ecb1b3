"""The reads every request makes (its caller, remembered per process for a moment) and the export
poll, on the hot-path asyncpg pool: the same answers as the ORM reads; revocation applies at once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import csrf_headers
from tests.integration.exports.conftest import Complete, Sql, request_export


async def issue_token(api: AsyncTestClient[Any]) -> str:
    r = await api.post("/api/tokens", json={"name": "poller"}, headers=await csrf_headers(api))
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def last_used(db_engine: AsyncEngine) -> dt.datetime | None:
    async with db_engine.connect() as conn:
        return (await conn.execute(text("SELECT last_used_at FROM api_tokens"))).scalar_one()


async def test_polling_an_export_answers_exactly_what_the_history_lists(
    api: AsyncTestClient[Any], video_id: str, complete: Complete
) -> None:
    export_id = (await request_export(api, video_id)).json()["id"]
    await complete(export_id, b"rendered bytes")
    polled = await api.get(f"/api/exports/{export_id}")
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "completed"
    assert polled.json()["size_bytes"] == len(b"rendered bytes")
    assert polled.json()["download_url"] == f"/api/exports/{export_id}/download"
    assert polled.json()["segments"] == [{"start": "0.5", "end": "1.5"}]
    listed = (await api.get("/api/exports")).json()["items"]
    assert listed == [polled.json()]


async def test_a_token_is_stamped_on_first_use_and_not_rewritten_within_a_minute(
    api: AsyncTestClient[Any], db_engine: AsyncEngine
) -> None:
    token = await issue_token(api)
    assert await last_used(db_engine) is None
    bearer = {"authorization": f"Bearer {token}"}
    assert (await api.get("/api/auth/me", headers=bearer)).status_code == 200
    first = await last_used(db_engine)
    assert first is not None
    assert (await api.get("/api/auth/me", headers=bearer)).status_code == 200
    assert await last_used(db_engine) == first


async def test_a_token_last_used_over_a_minute_ago_is_stamped_again(
    api: AsyncTestClient[Any], db_engine: AsyncEngine, sql: Sql
) -> None:
    token = await issue_token(api)
    await sql("UPDATE api_tokens SET last_used_at = now() - interval '61 seconds'")
    stale = await last_used(db_engine)
    assert (await api.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})).status_code == 200
    fresh = await last_used(db_engine)
    assert stale is not None
    assert fresh is not None
    assert fresh - stale >= dt.timedelta(seconds=61)


async def test_a_deactivated_account_loses_its_session_and_its_tokens_on_the_next_request(
    api: AsyncTestClient[Any], sql: Sql
) -> None:
    token = await issue_token(api)
    await sql("UPDATE users SET is_active = false")
    session = await api.get("/api/auth/me")
    assert session.status_code == 401
    bearer = await api.get("/api/auth/me", headers={"authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    assert bearer.json()["detail"] == "invalid or revoked API token"


async def token_in_use(api: AsyncTestClient[Any]) -> tuple[str, dict[str, str]]:
    """A new token's id and bearer header, used once so this process remembers it."""
    created = (await api.post("/api/tokens", json={"name": "ci"}, headers=await csrf_headers(api))).json()
    bearer = {"authorization": f"Bearer {created['token']}"}
    assert (await api.get("/api/auth/me", headers=bearer)).status_code == 200
    return created["id"], bearer


async def test_a_token_in_use_is_refused_on_the_first_request_after_its_revocation(
    api: AsyncTestClient[Any],
) -> None:
    token_id, bearer = await token_in_use(api)
    revoked = await api.delete(f"/api/tokens/{token_id}", headers=await csrf_headers(api))
    assert revoked.status_code == 204
    refused = await api.get("/api/auth/me", headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "invalid or revoked API token"


async def test_a_token_in_use_is_refused_after_its_revocation_on_the_tokens_page(
    api: AsyncTestClient[Any],
) -> None:
    token_id, bearer = await token_in_use(api)
    page = await api.post(f"/tokens/{token_id}/revoke", headers=await csrf_headers(api))
    assert page.status_code == 200
    assert (await api.get("/api/auth/me", headers=bearer)).status_code == 401
