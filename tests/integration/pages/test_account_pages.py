"""The minimal pages: sign up and log in through CSRF-protected forms, see the video list, log out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.fixtures.app import PASSWORD, register


def form_token(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


async def test_the_video_page_redirects_anonymous_visitors_to_log_in(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/videos", follow_redirects=False)
    assert r.status_code in (302, 303, 307)
    assert r.headers["location"] == "/login?next=/videos"


async def test_sign_up_through_the_form_lands_on_the_video_list(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/register")
    r = await client.post(
        "/register",
        data={"email": "page@example.com", "password": PASSWORD, "_csrf_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/videos"
    videos = await client.get("/videos")
    assert videos.status_code == 200
    assert "page@example.com" in videos.text
    assert "No videos yet" in videos.text


async def test_a_form_post_without_the_csrf_token_is_refused(client: AsyncTestClient[Any]) -> None:
    await client.get("/login")
    r = await client.post("/login", data={"email": "x@example.com", "password": PASSWORD})
    assert r.status_code == 403


async def test_a_wrong_password_shows_the_error_in_the_form(make_client: Any) -> None:
    await register(await make_client(), "form@example.com")
    browser = await make_client()
    page = await browser.get("/login")
    r = await browser.post(
        "/login",
        data={
            "email": "form@example.com",
            "password": "not the password",
            "_csrf_token": form_token(page.text),
        },
    )
    assert r.status_code == 401
    assert "Wrong email or password." in r.text
    assert 'value="form@example.com"' in r.text


@pytest.mark.parametrize("elsewhere", ["//evil.example", "/\\evil.example", "https://evil.example/"])
async def test_log_in_follows_next_but_only_to_this_site(make_client: Any, elsewhere: str) -> None:
    await register(await make_client(), "next@example.com")
    browser = await make_client()
    page = await browser.get("/login")
    r = await browser.post(
        "/login",
        data={
            "email": "next@example.com",
            "password": PASSWORD,
            "next": elsewhere,
            "_csrf_token": form_token(page.text),
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/videos"


async def test_log_out_from_the_page_ends_the_session(client: AsyncTestClient[Any]) -> None:
    await register(client, "out@example.com")
    page = await client.get("/videos")
    r = await client.post("/logout", data={"_csrf_token": form_token(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_another_users_video_page_is_a_404_page(make_client: Any) -> None:
    browser = await make_client()
    await register(browser, "viewer@example.com")
    r = await browser.get("/videos/01890000-0000-7000-8000-000000000000")
    assert r.status_code == 404
    assert "404" in r.text
    assert r.headers["content-type"].startswith("text/html")
