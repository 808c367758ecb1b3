"""An export caught while it renders: cancelled from its card, and the same live state after a reload.

The worker is frozen (SIGSTOP) once the page shows the render going, so what the test looks at cannot
run ahead of it: no race between a click and the end of the render.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Locator, Page, expect

from gpu_worker.progress import read_snapshot
from tests.browser.conftest import (
    UI_TIMEOUT_MS,
    LiveService,
    api_json,
    choose_export,
    export_id,
    mark_segment,
    open_export_dialog,
    screenshot,
    sign_up,
    start_export,
    upload,
    wait_rendering,
)
from tests.browser.waits import until
from tests.media import MadeVideo

pytestmark = pytest.mark.slow


async def _long_export(page: Page, long_clip: MadeVideo) -> Locator:
    """Sign up, upload the long clip, mark all of it and start a heavy export; its card, rendering."""
    await sign_up(page)
    video_id = await upload(page, long_clip)
    await page.goto(f"/videos/{video_id}")
    await mark_segment(page, 0, float(long_clip.frame_times[-1]))
    dialog = await open_export_dialog(page)
    await choose_export(dialog, mode="Single file", quality="high")
    card = await start_export(dialog)
    await wait_rendering(card)
    return card


async def test_cancel_on_a_rendering_export_marks_it_cancelled(
    page: Page, service: LiveService, long_clip: MadeVideo
) -> None:
    card = await _long_export(page, long_clip)
    with service.worker_paused():
        await card.get_by_role("button", name="Cancel").click()
        await expect(card).to_have_attribute("data-status", "cancelled")
        await expect(card.locator(".status")).to_have_text(re.compile("cancelled", re.IGNORECASE))
        await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    await service.idle()

    await page.reload()
    await expect(card).to_have_attribute("data-status", "cancelled")
    await expect(card.get_by_role("link", name="Download")).to_have_count(0)


async def test_a_reload_shows_the_running_exports_live_state(
    page: Page, service: LiveService, long_clip: MadeVideo
) -> None:
    card = await _long_export(page, long_clip)
    ident = export_id(await card.get_attribute("id") or "")
    bar = card.get_by_role("progressbar", name="Export progress")
    with service.worker_paused():
        snapshot = await read_snapshot(service.redis, ident)
        assert snapshot is not None
        assert snapshot.status == "processing"
        await expect(bar).to_have_attribute("aria-valuenow", str(snapshot.percent))
        await screenshot(page, "export-running")

        await page.reload()
        await expect(card).to_have_attribute("data-status", "processing")
        await expect(bar).to_have_attribute("aria-valuenow", str(snapshot.percent))
        await expect(card.locator(".phase")).to_contain_text(re.compile(str(snapshot.phase), re.IGNORECASE))

        second_tab = await page.context.new_page()
        await second_tab.goto(page.url)
        await expect(second_tab.locator(f"#export-{ident} [role=progressbar]")).to_have_attribute(
            "aria-valuenow", str(snapshot.percent)
        )
    await api_json(page, "DELETE", f"/api/exports/{ident}", status=204)


async def test_live_progress_updates_a_rendering_card_in_place(
    page: Page, service: LiveService, long_clip: MadeVideo
) -> None:
    """While the status stays, updates change the bar and the figures only: the Cancel button a person
    is about to click stays the same element, so the click lands."""
    card = await _long_export(page, long_clip)
    card_id = await card.get_attribute("id")
    await page.evaluate("(id) => { window.held = document.querySelector(`#${id} button`); }", card_id)
    before = int(await card.get_by_role("progressbar").get_attribute("aria-valuenow") or "0")
    await until(
        page,
        """([id, before]) => Number(document.querySelector(`#${id} [role=progressbar]`)
            .getAttribute('aria-valuenow')) > before + 1""",
        [card_id, before],
        timeout_ms=UI_TIMEOUT_MS,
    )
    held = "(id) => window.held.isConnected && window.held === document.querySelector(`#${id} button`)"
    assert await page.evaluate(held, card_id)
    await page.evaluate("window.held.click()")
    await expect(card).to_have_attribute("data-status", "cancelled")
