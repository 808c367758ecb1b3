"""The harness itself: Chromium starts, the app serves its pages and its vendored scripts, offline."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

pytestmark = pytest.mark.slow


async def test_login_page_loads_vendored_htmx_and_its_websocket_extension(page: Page) -> None:
    response = await page.goto("/login")
    assert response is not None
    assert response.status == 200

    await expect(page.get_by_label("Email")).to_be_visible()
    await expect(page.get_by_label("Password")).to_be_visible()
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert str(await page.evaluate("htmx.version")).startswith("2.")
    # The ws extension's init (run when it registers) installs htmx.createWebSocket.
    assert await page.evaluate("typeof htmx.createWebSocket") == "function"
