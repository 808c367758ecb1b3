"""The API docs (/schema/swagger) render with no internet and under a strict Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.async_api import ConsoleMessage, Page, Request, Route, expect

from tests.browser.conftest import LiveService

pytestmark = pytest.mark.slow

STRICT_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
"""No inline script or style, nothing from another origin; data: images for Swagger UI's icons."""


async def test_the_api_docs_render_offline_under_a_strict_content_security_policy(
    page: Page, service: LiveService
) -> None:
    elsewhere: list[str] = []
    refused: list[str] = []

    async def offline(route: Route, request: Request) -> None:
        if not request.url.startswith(service.base_url):
            elsewhere.append(request.url)
            await route.abort("internetdisconnected")
        elif request.url.startswith(f"{service.base_url}/schema/swagger"):
            # The policy is set here, so that this test holds whatever headers the app adds itself.
            answer = await route.fetch()
            await route.fulfill(
                response=answer, headers={**answer.headers, "content-security-policy": STRICT_CSP}
            )
        else:
            await route.continue_()

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    await page.route("**/*", offline)
    page.on("console", console)
    await page.goto("/schema/swagger")

    await expect(page.locator("#operations-exports-requestExport")).to_be_visible()
    await expect(page.locator(".opblock")).not_to_have_count(0)
    assert (elsewhere, refused) == ([], [])
