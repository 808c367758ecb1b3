"""The export history page: newest first, and its Status and Video filters show exactly the matching rows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import (
    RENDER_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    LiveService,
    api_json,
    screenshot,
    sign_up,
    upload,
)
from tests.browser.waits import until
from tests.e2e.conftest import eventually
from tests.media import MadeVideo, make_video

pytestmark = pytest.mark.slow

EXPORT = {
    "segments": [{"start": "0", "end": "1"}],
    "resolution": "source",
    "quality": "draft",
    "encoder": "cpu",
}


@pytest.fixture(scope="session")
def other_clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    return make_video(
        tmp_path_factory.mktemp("browser-media") / "harbour.mp4", seconds=2, width=320, height=240
    )


async def _export(page: Page, video_id: str) -> str:
    created: dict[str, Any] = await api_json(
        page, "POST", f"/api/videos/{video_id}/export", EXPORT, status=202
    )
    return str(created["id"])


async def _expect_rows(page: Page, want: list[tuple[str, str]]) -> None:
    """The history table shows exactly these (export id, status) rows, in this order."""
    expected = [[f"history-{ident}", status] for ident, status in want]
    try:
        await until(
            page,
            """(want) => JSON.stringify(
                [...document.querySelectorAll("tr[id^='history-']")].map((r) => [r.id, r.dataset.status])
            ) === JSON.stringify(want)""",
            expected,
            timeout_ms=UI_TIMEOUT_MS,
        )
    except Exception:
        got = await page.locator("tr[id^='history-']").evaluate_all(
            "rs => rs.map(r => [r.id, r.dataset.status])"
        )
        raise AssertionError(f"history rows: expected {expected}, got {got}") from None


async def test_history_filters_by_status_and_by_video(
    page: Page, service: LiveService, clip: MadeVideo, other_clip: MadeVideo
) -> None:
    await sign_up(page)
    beach = await upload(page, clip)
    harbour = await upload(page, other_clip)
    done = await _export(page, beach)

    async def completed() -> bool:
        export = await api_json(page, "GET", f"/api/exports/{done}")
        return bool(export["status"] == "completed")

    await eventually(completed, within_s=RENDER_TIMEOUT_MS / 1000, what="the first export to complete")
    with service.worker_paused():
        waiting_harbour = await _export(page, harbour)
        waiting_beach = await _export(page, beach)

        await page.goto("/exports")
        await _expect_rows(
            page, [(waiting_beach, "pending"), (waiting_harbour, "pending"), (done, "completed")]
        )
        await screenshot(page, "history")

        await page.get_by_label("Status").select_option("completed")
        await expect(page).to_have_url(re.compile(r"[?&]status=completed"))
        await _expect_rows(page, [(done, "completed")])

        await page.get_by_label("Status").select_option("pending")
        await _expect_rows(page, [(waiting_beach, "pending"), (waiting_harbour, "pending")])
        await page.get_by_label("Video").select_option(label=other_clip.path.name)
        await expect(page).to_have_url(re.compile(rf"[?&]video(_id)?={harbour}"))
        await _expect_rows(page, [(waiting_harbour, "pending")])

        await page.get_by_label("Status").select_option(index=0)
        await page.get_by_label("Video").select_option(label=clip.path.name)
        await _expect_rows(page, [(waiting_beach, "pending"), (done, "completed")])

        for pending in (waiting_harbour, waiting_beach):
            await api_json(page, "DELETE", f"/api/exports/{pending}", status=204)
