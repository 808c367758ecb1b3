"""What an editor does end to end: sign up, upload, mark two segments, export, watch the bar reach 100 %
over the websocket, download, and get exactly the frames that were marked."""

from __future__ import annotations

import zipfile
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Locator, Page, WebSocket, expect

from tests.browser.conftest import (
    RENDER_TIMEOUT_MS,
    choose_export,
    mark_segment,
    open_export_dialog,
    screenshot,
    segments,
    sign_up,
    start_export,
    upload,
)
from tests.media import MadeVideo, decode_indices, decode_output

pytestmark = pytest.mark.slow

FIRST = (Fraction(2, 5), Fraction(6, 5))
"""Marked with the buttons: frames 10..29 of the 25 fps clip."""
SECOND = (Fraction(2), Fraction(14, 5))
"""Marked with the I and O keys: frames 50..69."""


async def _mark_two_segments(page: Page, video_id: str) -> None:
    await page.goto(f"/videos/{video_id}")
    await mark_segment(page, float(FIRST[0]), float(FIRST[1]))
    await mark_segment(page, float(SECOND[0]), float(SECOND[1]), keyboard=True)
    assert await segments(page) == [FIRST, SECOND]
    await expect(page.locator("#segments li")).to_have_count(2)
    await expect(page.locator("#segments-total")).to_contain_text("1.6")


def _progress_frames(page: Page) -> list[str]:
    """Every message the page will receive on the UI's progress websocket (/ws/ui/exports)."""
    frames: list[str] = []

    def received(data: str | bytes) -> None:
        frames.append(data if isinstance(data, str) else data.decode())

    def opened(ws: WebSocket) -> None:
        if urlsplit(ws.url).path == "/ws/ui/exports":
            ws.on("framereceived", received)

    page.on("websocket", opened)
    return frames


async def _finished(card: Locator) -> None:
    """The card, updated in place (no reload), shows the export completed at 100 %."""
    await expect(card).to_have_attribute("data-status", "completed", timeout=RENDER_TIMEOUT_MS)
    await expect(card.get_by_role("progressbar", name="Export progress")).to_have_attribute(
        "aria-valuenow", "100"
    )


async def _download(card: Locator, into: Path) -> Path:
    async with card.page.expect_download() as info:
        await card.get_by_role("link", name="Download").click()
    download = await info.value
    path = into / download.suggested_filename
    await download.save_as(path)
    return path


async def test_single_file_export_reaches_100_percent_live_and_downloads_the_marked_frames(
    page: Page, clip: MadeVideo, tmp_path: Path
) -> None:
    frames = _progress_frames(page)
    await sign_up(page)
    video_id = await upload(page, clip)
    upload_bar = page.get_by_role("progressbar", name="Upload progress", include_hidden=True)
    await expect(upload_bar).to_have_attribute("aria-valuenow", "100")
    await screenshot(page, "videos")
    await _mark_two_segments(page, video_id)
    await screenshot(page, "video-page")
    dialog = await open_export_dialog(page)
    await choose_export(dialog, mode="Single file")
    await screenshot(page, "export-dialog", full_page=False)

    card = await start_export(dialog)
    await _finished(card)
    card_id = await card.get_attribute("id")
    assert any(card_id in frame and "completed" in frame for frame in frames), frames
    await expect(card.locator(".encoder-badge")).to_have_text("CPU")

    output = decode_output(await _download(card, tmp_path))
    assert output.indices == clip.frames_in(*FIRST) + clip.frames_in(*SECOND)
    assert (output.width, output.height) == (320, 240)
    assert output.video_codec == "h264"
    assert output.audio_codec == "aac"


async def test_clips_export_downloads_a_zip_with_one_file_per_segment(
    page: Page, clip: MadeVideo, tmp_path: Path
) -> None:
    await sign_up(page)
    await _mark_two_segments(page, await upload(page, clip))
    dialog = await open_export_dialog(page)
    await choose_export(dialog, mode="Separate clips (ZIP)")

    card = await start_export(dialog)
    await _finished(card)
    archive = await _download(card, tmp_path)

    assert archive.suffix == ".zip"
    with zipfile.ZipFile(archive) as zipped:
        names = sorted(zipped.namelist())
        assert len(names) == 2
        assert all(name.endswith(".mp4") for name in names)
        zipped.extractall(tmp_path / "clips")
    assert [decode_indices(tmp_path / "clips" / name) for name in names] == [
        clip.frames_in(*FIRST),
        clip.frames_in(*SECOND),
    ]
