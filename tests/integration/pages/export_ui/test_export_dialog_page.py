"""The export dialog's submit (POST /videos/{id}/exports): a card for a valid request, the form
again with the refusal next to its field otherwise."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from saq.queue.redis import RedisQueue

from backend.lib.settings import Settings
from tests.integration.pages.export_ui.conftest import (
    MakeSettings,
    Sql,
    card_ids,
    logged_in,
    start,
    submit,
    upload,
)


async def test_a_valid_submit_answers_the_new_card_for_the_top_of_the_exports_section(
    browser: AsyncTestClient[Any], video_id: str
) -> None:
    r = await submit(browser, video_id)
    assert r.status_code == 201
    assert (r.headers["hx-retarget"], r.headers["hx-reswap"], r.headers["hx-trigger"]) == (
        "#exports",
        "afterbegin",
        "export-created",
    )
    (export_id,) = card_ids(r.text)
    assert f'<article id="export-{export_id}" class="export" data-status="pending"' in r.text
    assert 'aria-valuenow="0"' in r.text
    assert '<form id="export-form"' in r.text
    assert 'hx-swap-oob="true"' in r.text
    assert 'class="field-error"' not in r.text


async def test_a_valid_submit_records_the_request_and_queues_its_job(
    browser: AsyncTestClient[Any], video_id: str, queue: RedisQueue, sql: Sql
) -> None:
    export_id = await start(browser, video_id, format="webm", codec="vp9", mode="clips", encoder="cpu")
    (row,) = await sql(
        "SELECT status, format, codec, mode, encoder_requested, segments FROM exports WHERE id = :id",
        id=export_id,
    )
    assert row[:5] == ("pending", "webm", "vp9", "clips", "cpu")
    assert row[5]["request"]["segments"] == [{"start": "0.5", "end": "1.5"}]
    job = await queue.job(export_id)
    assert job is not None
    assert job.kwargs == {"export_id": export_id}


async def test_a_submit_with_no_segments_exports_the_whole_video_as_the_api_does(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    """One documented rule for the dialog and the API: no segments means the whole video."""
    export_id = await start(browser, video_id, segments="[]")
    (row,) = await sql("SELECT status, segments FROM exports WHERE id = :id", id=export_id)
    assert (row[0], row[1]["request"]["segments"]) == ("pending", [])


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"segments": '[{"start":"0","end":"1"},{"start":"1.5","end":"2"},{"start":"0.5","end":"1.2"}]'},
            "segments",
            "Segments 1 and 3 overlap; remove or shorten one of them.",
        ),
        (
            {"segments": '[{"start":"0","end":"1"},{"start":"1","end":"5"}]'},
            "segments",
            "Segment 2: end is past the end of the video (2 s)",
        ),
        ({"segments": '[{"start":"1","end":"0.5"}]'}, "segments", "Segment 1: end must be after start"),
        ({"resolution": "999p"}, "resolution", "Choose one of the offered resolution options."),
        ({"format": "webm", "codec": "h264"}, "codec", "h264 cannot go in webm (allowed: vp9, av1)"),
        ({"codec": "av1", "quality": "lossless"}, "quality", "lossless is not available for av1"),
    ],
    ids=["overlapping", "out-of-range", "reversed", "resolution", "codec-for-format", "quality"],
)
async def test_an_invalid_field_comes_back_inline_next_to_its_control(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql, changes: dict[str, str], field: str, message: str
) -> None:
    r = await submit(browser, video_id, **changes)
    assert r.status_code == 422
    assert re.findall(r'<p class="field-error" id="error-(\w+)">([^<]*)</p>', r.text) == [(field, message)]
    assert r.text.count(f'aria-invalid="true" aria-describedby="error-{field}"') >= 1
    assert await sql("SELECT id FROM exports") == []


async def test_the_active_export_limit_is_shown_in_the_form(
    make_export_settings: MakeSettings, clip: Any, sql: Sql
) -> None:
    browser = await logged_in(make_export_settings(max_active_exports=1), "busy@example.com")
    try:
        video = await upload(browser, clip)
        await start(browser, video)
        r = await submit(browser, video)
    finally:
        await browser.__aexit__(None, None, None)
    assert r.status_code == 429
    limit = "At most 1 exports may be pending or processing at once."
    assert f'<p class="form-error" role="alert">{limit}</p>' in r.text
    assert len(await sql("SELECT id FROM exports")) == 1


async def test_a_video_that_is_not_ready_is_refused_in_the_form(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    await sql("UPDATE videos SET status = 'probing' WHERE id = :id", id=video_id)
    r = await submit(browser, video_id)
    assert r.status_code == 409
    assert '<p class="form-error" role="alert">Video is not ready.</p>' in r.text


async def test_another_users_video_answers_the_not_found_page(
    browser: AsyncTestClient[Any], stranger: AsyncTestClient[Any], video_id: str, ui_settings: Settings
) -> None:
    r = await submit(stranger, video_id)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
