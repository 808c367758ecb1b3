"""Accounts over the JSON API: register, log in/out with a session cookie, CSRF, API tokens."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.fixtures.app import PASSWORD, csrf_headers, register


async def test_register_logs_the_new_user_in(client: AsyncTestClient[Any]) -> None:
    user = await register(client, "Alice@Example.com")
    assert user["email"] == "alice@example.com"
    me = await client.get("/api/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"]


async def test_register_twice_with_the_same_email_is_a_conflict(client: AsyncTestClient[Any]) -> None:
    await register(client, "bob@example.com")
    r = await client.post(
        "/api/auth/register",
        json={"email": "BOB@example.com", "password": PASSWORD},
        headers=await csrf_headers(client),
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "an account with this email already exists"


async def test_register_rejects_a_short_password_naming_the_field(client: AsyncTestClient[Any]) -> None:
    r = await client.post(
        "/api/auth/register",
        json={"email": "c@example.com", "password": "short"},
        headers=await csrf_headers(client),
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body.password", "message": "Expected `str` of length >= 8"}]


async def test_anonymous_me_is_401_problem_json(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/api/auth/me")
    assert r.status_code == 401
    assert r.json()["status"] == 401


async def test_login_with_the_right_password_starts_a_session(make_client: Any) -> None:
    first = await make_client()
    await register(first, "dana@example.com")
    second = await make_client()
    r = await second.post(
        "/api/auth/login",
        json={"email": "dana@example.com", "password": PASSWORD},
        headers=await csrf_headers(second),
    )
    assert r.status_code == 200
    assert (await second.get("/api/auth/me")).json()["email"] == "dana@example.com"


async def test_login_with_a_wrong_password_is_401(make_client: Any) -> None:
    first = await make_client()
    await register(first, "erin@example.com")
    second = await make_client()
    r = await second.post(
        "/api/auth/login",
        json={"email": "erin@example.com", "password": "wrong password"},
        headers=await csrf_headers(second),
    )
    assert r.status_code == 401
    assert r.json()["detail"] == "wrong email or password"
    assert (await second.get("/api/auth/me")).status_code == 401


async def test_logout_ends_the_session(client: AsyncTestClient[Any]) -> None:
    await register(client, "finn@example.com")
    r = await client.post("/api/auth/logout", headers=await csrf_headers(client))
    assert r.status_code == 204
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_a_cookie_request_without_the_csrf_header_is_refused(client: AsyncTestClient[Any]) -> None:
    await register(client, "gail@example.com")
    r = await client.post("/api/tokens", json={"name": "ci"})
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]


async def test_api_token_is_shown_once_and_authenticates_without_csrf(make_client: Any) -> None:
    browser = await make_client()
    await register(browser, "hana@example.com")
    created = await browser.post("/api/tokens", json={"name": "ci"}, headers=await csrf_headers(browser))
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("vx_")
    listed = (await browser.get("/api/tokens")).json()
    assert [t["name"] for t in listed] == ["ci"]
    assert "token" not in listed[0]
    assert listed[0]["prefix"] == token[:10]

    script = await make_client()
    auth = {"authorization": f"Bearer {token}"}
    assert (await script.get("/api/auth/me", headers=auth)).json()["email"] == "hana@example.com"
    second = await script.post("/api/tokens", json={"name": "second"}, headers=auth)
    assert second.status_code == 201


async def test_a_revoked_token_no_longer_authenticates(make_client: Any) -> None:
    browser = await make_client()
    await register(browser, "ivan@example.com")
    created = (
        await browser.post("/api/tokens", json={"name": "ci"}, headers=await csrf_headers(browser))
    ).json()
    r = await browser.delete(f"/api/tokens/{created['id']}", headers=await csrf_headers(browser))
    assert r.status_code == 204
    script = await make_client()
    r = await script.get("/api/auth/me", headers={"authorization": f"Bearer {created['token']}"})
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid or revoked API token"
    listed = (await browser.get("/api/tokens")).json()
    assert listed[0]["revoked_at"] is not None


async def test_an_unknown_token_is_401(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/api/auth/me", headers={"authorization": "Bearer vx_" + "a" * 43})
    assert r.status_code == 401


async def test_another_users_token_id_cannot_be_revoked(make_client: Any) -> None:
    alice = await make_client()
    await register(alice, "jo@example.com")
    created = (await alice.post("/api/tokens", json={"name": "ci"}, headers=await csrf_headers(alice))).json()
    mallory = await make_client()
    await register(mallory, "mallory@example.com")
    r = await mallory.delete(f"/api/tokens/{created['id']}", headers=await csrf_headers(mallory))
    assert r.status_code == 404
    still = await (await make_client()).get(
        "/api/auth/me", headers={"authorization": f"Bearer {created['token']}"}
    )
    assert still.status_code == 200


async def test_password_is_stored_as_an_argon2id_hash(client: AsyncTestClient[Any], db_engine: Any) -> None:
    from sqlalchemy import text

    await register(client, "kim@example.com")
    async with db_engine.connect() as conn:
        stored = (await conn.execute(text("select password_hash from users"))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_a_bearer_request_starts_no_session(make_client: Any, redis: Any) -> None:
    browser = await make_client()
    await register(browser, "kim@example.com")
    token = (
        await browser.post("/api/tokens", json={"name": "ci"}, headers=await csrf_headers(browser))
    ).json()["token"]
    before = {key async for key in redis.scan_iter(match="vexport:sessions*")}
    script = await make_client()
    r = await script.get("/api/videos", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    assert {key async for key in redis.scan_iter(match="vexport:sessions*")} == before


async def test_an_anonymous_page_view_stores_no_session(client: AsyncTestClient[Any], redis: Any) -> None:
    before = {key async for key in redis.scan_iter(match="vexport:sessions*")}
    r = await client.get("/login")
    assert r.status_code == 200
    assert "session=" not in r.headers.get("set-cookie", "")
    assert {key async for key in redis.scan_iter(match="vexport:sessions*")} == before


async def test_log_in_gets_a_new_session_id_and_drops_a_planted_one(make_client: Any, redis: Any) -> None:
    first = await make_client()
    await register(first, "lee@example.com")
    browser = await make_client()
    headers = await csrf_headers(browser)
    planted = "a" * 64
    browser.cookies.set("session", planted)
    r = await browser.post(
        "/api/auth/login", json={"email": "lee@example.com", "password": PASSWORD}, headers=headers
    )
    assert r.status_code == 200
    fresh = r.cookies["session"]
    assert len(fresh) == 64
    assert fresh != planted
    assert await redis.exists(f"vexport:sessions:{planted}") == 0
    assert await redis.exists(f"vexport:sessions:{fresh}") == 1
