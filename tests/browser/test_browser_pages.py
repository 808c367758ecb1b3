"""Pages beyond the export flow: a phone-width layout, and another user's video answering 404."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import (
    LiveService,
    api_json,
    mark_segment,
    screenshot,
    sign_up,
    unique_email,
    upload,
)
from tests.fixtures.live import account
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

PHONE_WIDTH = 375


async def test_pages_fit_a_phone_width_without_horizontal_scrolling(
    phone_page: Page, clip: MadeVideo
) -> None:
    page = phone_page
    await sign_up(page)
    video_id = await upload(page, clip)
    await screenshot(page, "videos-phone")
    await page.goto(f"/videos/{video_id}")
    await mark_segment(page, 0.4, 1.2)
    await screenshot(page, "video-page-phone")
    export = {"segments": [{"start": "0", "end": "1"}], "quality": "draft", "encoder": "cpu"}
    await api_json(page, "POST", f"/api/videos/{video_id}/export", export, status=202)
    widths = {}
    for path in (f"/videos/{video_id}", "/videos", "/exports"):
        await page.goto(path)
        widths[path] = await page.evaluate("document.documentElement.scrollWidth")
    await expect(page.locator("#history-body > tr")).to_have_count(1)
    await screenshot(page, "history-phone")
    assert widths == dict.fromkeys(widths, PHONE_WIDTH)


async def test_another_users_video_is_a_404_page(page: Page, service: LiveService, clip: MadeVideo) -> None:
    owner = await account(service.address, unique_email())
    try:
        r = await owner.http.post(
            "/api/videos",
            files={"file": (clip.path.name, clip.path.read_bytes(), "video/mp4")},
            headers={"Authorization": f"Bearer {owner.token}"},
        )
        assert r.status_code == 201, r.text
    finally:
        await owner.http.aclose()
    await sign_up(page)

    response = await page.goto(f"/videos/{r.json()['id']}")
    assert response is not None
    assert response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")


async def test_segment_times_never_run_into_their_buttons(page: Page, clip: MadeVideo) -> None:
    await sign_up(page)
    video_id = await upload(page, clip)
    await page.goto(f"/videos/{video_id}")
    await mark_segment(page, 0.4, 1.2)
    await mark_segment(page, 2, 3.96)
    gaps = {}
    for width in (PHONE_WIDTH, 500, 830, 1000, 1280):
        await page.set_viewport_size({"width": width, "height": 900})
        gaps[width] = await page.locator("#segments li").evaluate_all(
            """items => items.map((li) => li.querySelector('.seg-actions').getBoundingClientRect().left
                - li.querySelector('.seg-times').getBoundingClientRect().right)"""
        )
    clear = {width: tuple(gap > 0 for gap in row) for width, row in gaps.items()}
    assert clear == dict.fromkeys(gaps, (True, True)), gaps
