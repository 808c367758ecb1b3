"""The API-token page: a new token is shown once and works as a bearer; a revoked one is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import LiveService, sign_up

pytestmark = pytest.mark.slow


@pytest.fixture
async def api(service: LiveService) -> AsyncIterator[httpx.AsyncClient]:
    """A script's HTTP client: no session cookie, only what it is given."""
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        yield client


async def _create_token(page: Page, name: str) -> str:
    await page.goto("/tokens")
    await page.get_by_label("Token name").fill(name)
    await page.get_by_role("button", name="Create token").click()
    shown = page.locator("#new-token")
    await expect(shown).not_to_be_empty()
    return (await shown.text_content() or "").strip()


async def test_a_new_token_is_shown_once_and_authenticates_the_api(
    page: Page, api: httpx.AsyncClient
) -> None:
    await sign_up(page)
    token = await _create_token(page, "nightly script")
    await expect(page.get_by_role("row").filter(has_text="nightly script")).to_have_count(1)

    r = await api.get("/api/videos", headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["items"]) == (200, [])

    await page.reload()
    await expect(page.get_by_role("row").filter(has_text="nightly script")).to_have_count(1)
    await expect(page.locator("#new-token")).to_have_count(0)


async def test_a_revoked_token_leaves_the_list_and_is_refused(page: Page, api: httpx.AsyncClient) -> None:
    await sign_up(page)
    token = await _create_token(page, "old laptop")
    row = page.get_by_role("row").filter(has_text="old laptop")

    await row.get_by_role("button", name="Revoke").click()
    await expect(row).to_have_count(0)

    r = await api.get("/api/videos", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_copy_puts_the_new_token_on_the_clipboard(page: Page) -> None:
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_up(page)
    token = await _create_token(page, "ci")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == token
