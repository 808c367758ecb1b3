"""New exports appear live on open pages (/ws/ui/exports): an export made elsewhere (the API, another
tab) shows up on its video's page and, where it matches the filters, on the newest history page.

The worker is frozen (SIGSTOP) throughout, so each export stays pending: what the page shows can only
have come from the announcement of its creation.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import LiveService, api_json, sign_up, upload
from tests.media import MadeVideo, make_video

pytestmark = pytest.mark.slow

EXPORT = {"segments": [{"start": "0", "end": "1"}], "quality": "draft", "encoder": "cpu"}


@pytest.fixture(scope="session")
def second_clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    return make_video(tmp_path_factory.mktemp("browser-media") / "pier.mp4", seconds=2, width=320, height=240)


async def _export(page: Page, video_id: str) -> str:
    url = f"/api/videos/{video_id}/export"
    created: dict[str, Any] = await api_json(page, "POST", url, EXPORT, status=202)
    return str(created["id"])


async def test_an_export_made_through_the_api_appears_on_its_open_video_page(
    page: Page, service: LiveService, clip: MadeVideo
) -> None:
    await sign_up(page)
    video_id = await upload(page, clip)
    await page.goto(f"/videos/{video_id}")
    await expect(page.locator("#exports-empty")).to_be_visible()
    with service.worker_paused():
        made = await _export(page, video_id)
        card = page.locator(f"#exports > #export-{made}")
        await expect(card).to_have_attribute("data-status", "pending")
        await expect(card.get_by_role("button", name="Cancel")).to_be_visible()
        await expect(page.locator("#exports-empty")).to_be_hidden()
        await api_json(page, "DELETE", f"/api/exports/{made}", status=204)


async def test_a_new_export_heads_the_history_page_only_when_it_matches_the_filter(
    page: Page, service: LiveService, clip: MadeVideo, second_clip: MadeVideo
) -> None:
    await sign_up(page)
    beach = await upload(page, clip)
    pier = await upload(page, second_clip)
    with service.worker_paused():
        older = await _export(page, pier)
        await page.goto(f"/exports?video_id={pier}")
        await expect(page.locator(f"#history-{older}")).to_be_visible()

        elsewhere = await _export(page, beach)
        matching = await _export(page, pier)
        await expect(page.locator("#history-body > tr").first).to_have_id(f"history-{matching}")
        ids = await page.locator("#history-body > tr").evaluate_all("rows => rows.map((r) => r.id)")
        assert ids == [f"history-{matching}", f"history-{older}"]
        for made in (older, elsewhere, matching):
            await api_json(page, "DELETE", f"/api/exports/{made}", status=204)
