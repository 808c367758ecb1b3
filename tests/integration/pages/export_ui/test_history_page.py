"""The history page /exports: newest first, filters by status and video, keyset pages both ways."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from tests.integration.pages.export_ui.conftest import Sql, row_ids, start, upload


def link(page: str, text: str) -> str | None:
    found = re.search(rf'href="([^"]+)" rel="(?:prev|next)">{text}</a>', page)
    return html.unescape(found.group(1)) if found else None


async def test_rows_are_newest_first(browser: AsyncTestClient[Any], video_id: str) -> None:
    made = [await start(browser, video_id) for _ in range(3)]
    r = await browser.get("/exports")
    assert r.status_code == 200
    assert row_ids(r.text) == made[::-1]


async def test_the_status_filter_shows_only_that_status(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    first, _, third = [await start(browser, video_id) for _ in range(3)]
    await sql("UPDATE exports SET status = 'cancelled' WHERE id IN (:a, :b)", a=first, b=third)
    r = await browser.get("/exports?status=cancelled")
    assert row_ids(r.text) == [third, first]
    assert '<option value="cancelled" selected>' in r.text


async def test_the_video_filter_shows_only_that_videos_exports(
    browser: AsyncTestClient[Any], video_id: str, clip: Path
) -> None:
    other_video = await upload(browser, clip, "other take.mp4")
    mine = await start(browser, video_id)
    await start(browser, other_video)
    r = await browser.get(f"/exports?video_id={video_id}")
    assert row_ids(r.text) == [mine]
    assert f'<option value="{video_id}" selected>holiday clip.mp4</option>' in r.text


async def test_older_and_newer_links_walk_the_pages(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    made = [await start(browser, video_id) for _ in range(5)]
    await sql("UPDATE exports SET status = 'completed'")
    newest_first = made[::-1]
    first = await browser.get("/exports?limit=2")
    assert row_ids(first.text) == newest_first[:2]
    assert link(first.text, "Newer") is None
    second = await browser.get(link(first.text, "Older") or "")
    assert row_ids(second.text) == newest_first[2:4]
    third = await browser.get(link(second.text, "Older") or "")
    assert row_ids(third.text) == newest_first[4:]
    assert link(third.text, "Older") is None
    back = await browser.get(link(second.text, "Newer") or "")
    assert row_ids(back.text) == newest_first[:2]
    assert link(back.text, "Newer") is None


async def test_no_exports_shows_the_empty_state(browser: AsyncTestClient[Any]) -> None:
    r = await browser.get("/exports")
    assert r.status_code == 200
    assert row_ids(r.text) == []
    assert "No exports yet." in r.text


async def test_only_the_newest_page_takes_live_rows_and_it_names_its_filters(
    browser: AsyncTestClient[Any], video_id: str
) -> None:
    for _ in range(3):
        await start(browser, video_id)
    first = await browser.get(f"/exports?limit=2&status=pending&video_id={video_id}")
    body = f'<tbody id="history-body" data-status="pending" data-video-id="{video_id}"'
    assert f"{body} data-live-insert>" in first.text
    older = await browser.get(link(first.text, "Older") or "")
    assert f"{body}>" in older.text
