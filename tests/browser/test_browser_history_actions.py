"""The history page's row actions: Re-run starts the same export again, Delete removes one."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Dialog, Page, expect

from tests.browser.conftest import RENDER_TIMEOUT_MS, LiveService, api_json, sign_up, upload
from tests.e2e.conftest import eventually
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

EXPORT = {"segments": [{"start": "0", "end": "1"}], "quality": "draft", "encoder": "cpu"}


async def _completed_export(page: Page, clip: MadeVideo) -> tuple[str, dict[str, Any]]:
    await sign_up(page)
    video_id = await upload(page, clip)
    url = f"/api/videos/{video_id}/export"
    created: dict[str, Any] = await api_json(page, "POST", url, EXPORT, status=202)

    async def completed() -> bool:
        export = await api_json(page, "GET", f"/api/exports/{created['id']}")
        return bool(export["status"] == "completed")

    await eventually(completed, within_s=RENDER_TIMEOUT_MS / 1000, what="the export to complete")
    return video_id, created


async def test_rerun_puts_a_new_pending_export_with_the_same_settings_on_top(
    page: Page, service: LiveService, clip: MadeVideo
) -> None:
    _, done = await _completed_export(page, clip)
    await page.goto("/exports")
    done_row = page.locator(f"#history-{done['id']}")
    with service.worker_paused():
        await done_row.get_by_role("button", name="Re-run").click()
        rows = page.locator("#history-body > tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(1)).to_have_id(f"history-{done['id']}")
        rerun = rows.first
        await expect(rerun).to_have_attribute("data-status", "pending")
        settings = await done_row.locator(".settings").inner_text()
        await expect(rerun.locator(".settings")).to_have_text(settings)
        rerun_id = (await rerun.get_attribute("id") or "").removeprefix("history-")
        again = await api_json(page, "GET", f"/api/exports/{rerun_id}")
        assert (again["video_id"], again["segments"]) == (done["video_id"], done["segments"])
        await api_json(page, "DELETE", f"/api/exports/{rerun_id}", status=204)


async def test_delete_removes_the_row_and_the_export(page: Page, clip: MadeVideo) -> None:
    _, done = await _completed_export(page, clip)
    await page.goto("/exports")
    prompts: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        prompts.append(dialog.message)
        await dialog.accept()

    page.on("dialog", confirm)
    await page.locator(f"#history-{done['id']}").get_by_role("button", name="Delete").click()
    await expect(page.locator("#history-body > tr")).to_have_count(0)
    await expect(page.locator("#history-empty")).to_be_visible()
    assert prompts == ["Delete this export and its file?"]
    response = await page.request.get(f"/api/exports/{done['id']}")
    assert response.status == 404
