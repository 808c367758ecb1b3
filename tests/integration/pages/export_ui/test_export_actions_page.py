"""The cards' and rows' buttons: Cancel keeps the export, Re-run repeats it, Delete removes it;
another user's id answers the HTML 404 page on every route."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from saq.job import Status
from saq.queue.redis import RedisQueue

from tests.integration.pages.export_ui.conftest import Sql, card_ids, row_ids, start


async def test_cancel_keeps_the_export_and_answers_its_cancelled_card(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    export_id = await start(browser, video_id)
    r = await browser.post(f"/exports/{export_id}/cancel")
    assert r.status_code == 200
    assert card_ids(r.text) == [export_id]
    assert 'data-status="cancelled"' in r.text
    assert ">Cancel</button>" not in r.text
    assert await sql("SELECT status FROM exports WHERE id = :id", id=export_id) == [("cancelled",)]


async def test_cancel_aborts_the_queued_job(
    browser: AsyncTestClient[Any], video_id: str, queue: RedisQueue
) -> None:
    export_id = await start(browser, video_id)
    await browser.post(f"/exports/{export_id}/cancel")
    job = await queue.job(export_id)
    assert job is not None
    assert job.status == Status.ABORTED


async def test_cancel_from_the_history_answers_the_row(browser: AsyncTestClient[Any], video_id: str) -> None:
    export_id = await start(browser, video_id)
    r = await browser.post(f"/exports/{export_id}/cancel?view=row")
    assert r.status_code == 200
    assert row_ids(r.text) == [export_id]
    assert card_ids(r.text) == []
    assert f'<tr id="history-{export_id}" class="history-row" data-status="cancelled"' in r.text


async def test_rerun_creates_a_new_export_with_the_same_request_and_encoder(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql, queue: RedisQueue
) -> None:
    first = await start(
        browser,
        video_id,
        segments='[{"start":"1","end":"2"},{"start":"0","end":"0.5"}]',
        resolution="360p",
        quality="draft",
        format="mov",
        codec="prores",
        mode="clips",
        encoder="cpu",
    )
    await sql("UPDATE exports SET status = 'completed', progress = 100 WHERE id = :id", id=first)
    r = await browser.post(f"/exports/{first}/rerun")
    assert r.status_code == 201
    assert (r.headers["hx-retarget"], r.headers["hx-reswap"]) == ("#history-body", "afterbegin")
    (second,) = row_ids(r.text)
    assert second != first
    rows = await sql(
        "SELECT id::text, resolution, quality, format, codec, mode, encoder_requested, segments->'request' "
        "FROM exports ORDER BY created_at"
    )
    assert [r[0] for r in rows] == [first, second]
    assert rows[0][1:] == rows[1][1:]
    assert rows[1][6] == "cpu"
    assert await queue.job(second) is not None


async def test_delete_removes_the_export_and_answers_an_empty_200(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    export_id = await start(browser, video_id)
    r = await browser.delete(f"/exports/{export_id}")
    assert (r.status_code, r.text) == (200, "")
    assert await sql("SELECT id FROM exports") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/exports/{id}/cancel"),
        ("POST", "/exports/{id}/cancel?view=row"),
        ("POST", "/exports/{id}/rerun"),
        ("DELETE", "/exports/{id}"),
        ("POST", "/videos/{video}/exports"),
    ],
)
async def test_another_users_ids_answer_the_not_found_page(
    browser: AsyncTestClient[Any],
    stranger: AsyncTestClient[Any],
    video_id: str,
    sql: Sql,
    method: str,
    path: str,
) -> None:
    export_id = await start(browser, video_id)
    url = path.format(id=export_id, video=video_id)
    r = await stranger.request(method, url, data={"segments": '[{"start":"0","end":"1"}]'})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert await sql("SELECT status FROM exports") == [("pending",)]
