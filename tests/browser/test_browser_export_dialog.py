"""The export dialog is a real modal: it validates in place, closes on Escape and keeps keyboard focus."""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import (
    choose_export,
    open_export_dialog,
    screenshot,
    sign_up,
    start_export,
    upload,
)
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

FOCUSABLE = (
    "a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), "
    "textarea:not([disabled]), [tabindex]:not([tabindex='-1'])"
)
IN_DIALOG = "document.getElementById('export-dialog').contains(document.activeElement)"


async def _dialog_on_video_page(page: Page, clip: MadeVideo) -> Locator:
    await sign_up(page)
    video_id = await upload(page, clip)
    await page.goto(f"/videos/{video_id}")
    return await open_export_dialog(page)


async def test_exporting_without_segments_exports_the_whole_video(page: Page, clip: MadeVideo) -> None:
    """No segments is the whole video in the dialog as in the API, and the summary says so first."""
    dialog = await _dialog_on_video_page(page, clip)
    await expect(dialog.locator("#export-segments-summary")).to_have_text("Whole video (no segments marked)")
    await choose_export(dialog, mode="Single file")
    await start_export(dialog)
    await expect(page.locator("#exports article.export")).to_have_count(1)


async def test_a_refused_export_shows_the_error_inline(page: Page, clip: MadeVideo) -> None:
    dialog = await _dialog_on_video_page(page, clip)
    await choose_export(dialog, mode="Separate clips (ZIP)")  # clips need marked segments
    await dialog.get_by_role("button", name="Start export").click()

    error = dialog.locator("#error-segments")
    await expect(error).to_have_text("Clips mode needs at least one segment")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#exports article.export")).to_have_count(0)
    await screenshot(page, "export-dialog-error", full_page=False)


async def test_escape_closes_the_dialog(page: Page, clip: MadeVideo) -> None:
    dialog = await _dialog_on_video_page(page, clip)
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert await page.evaluate("document.getElementById('export-dialog').open") is False


async def test_the_dialog_takes_focus_and_tab_never_leaves_it(page: Page, clip: MadeVideo) -> None:
    dialog = await _dialog_on_video_page(page, clip)
    fields = dialog.locator("#export-form").locator("select, input:not([type=hidden]), textarea")
    await expect(fields.filter(visible=True).first).to_be_focused()

    controls = dialog.locator(FOCUSABLE).filter(visible=True)

    await controls.last.focus()
    await page.keyboard.press("Tab")
    assert await page.evaluate(IN_DIALOG), "Tab from the dialog's last control left the dialog"
    await controls.first.focus()
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate(IN_DIALOG), "Shift+Tab from the dialog's first control left the dialog"


async def test_whole_video_marks_one_segment_from_zero_to_the_duration(page: Page, clip: MadeVideo) -> None:
    await sign_up(page)
    video_id = await upload(page, clip)
    await page.goto(f"/videos/{video_id}")
    assert await page.locator("#editor").get_attribute("data-duration") == "4.0"

    await page.get_by_role("button", name="Whole video").click()
    assert await page.locator("#segments-field").input_value() == '[{"start":"0","end":"4"}]'
    dialog = await open_export_dialog(page)
    await expect(dialog.locator("#export-segments-summary")).to_have_text("1 segment, 0:04.0 in total")
