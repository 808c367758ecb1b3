"""POST /api/videos/{id}/export: validation naming the field, the queued job, idempotency, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from saq.queue.redis import RedisQueue

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from tests.fixtures.app import register
from tests.integration.exports.conftest import MakeSettings, Sql, request_export, upload

UNKNOWN = "01890000-0000-7000-8000-000000000000"


async def test_a_valid_request_answers_202_with_location_and_queues_one_keyed_job(
    api: AsyncTestClient[Any], video_id: str, queue: RedisQueue
) -> None:
    r = await request_export(api, video_id)
    assert r.status_code == 202, r.text
    export = r.json()
    assert r.headers["location"] == f"/api/exports/{export['id']}"
    assert {k: export[k] for k in ("video_id", "status", "progress", "phase", "attempt")} == {
        "video_id": video_id,
        "status": "pending",
        "progress": 0,
        "phase": None,
        "attempt": 0,
    }
    assert (export["resolution"], export["quality"], export["format"], export["codec"], export["mode"]) == (
        "720p",
        "standard",
        "mp4",
        "h264",
        "single",
    )
    assert export["segments"] == [{"start": "0.5", "end": "1.5"}]
    assert export["clips"] == []
    assert (export["encoder_requested"], export["encoder_used"], export["download_url"]) == (
        "auto",
        None,
        None,
    )

    job = await queue.job(export["id"])
    assert job is not None
    assert (job.function, job.kwargs, job.status) == ("export_video", {"export_id": export["id"]}, "queued")
    assert (job.timeout, job.heartbeat, job.retries) == (6 * 3600, 60, 3)
    assert (await api.get(r.headers["location"])).json() == export


async def test_seconds_may_be_numbers_or_ratios_and_are_stored_as_exact_decimals(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    body = {"segments": [{"start": 0, "end": 0.1}, {"start": "1001/1000", "end": 2}], "format": "webm"}
    r = await request_export(api, video_id, body)
    assert r.status_code == 202, r.text
    assert r.json()["segments"] == [{"start": "0", "end": "0.1"}, {"start": "1.001", "end": "2"}]
    assert (r.json()["codec"], r.json()["resolution"]) == ("vp9", "source")


@pytest.mark.parametrize("start", [1.3333333333333333, 1.0000000001, 5e-324])
async def test_seconds_more_precise_than_nanoseconds_are_422_naming_the_field(
    api: AsyncTestClient[Any], video_id: str, start: float
) -> None:
    """Refused rather than rounded: what the API accepts is exactly what the worker renders."""
    r = await request_export(api, video_id, {"segments": [{"start": start, "end": 2}]})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {
            "field": "body.segments[0].start",
            "message": "more precise than seconds are kept: at most 9 decimal places, "
            "or a ratio such as 4/3 with a denominator up to 9999999999",
        }
    ]


async def test_a_video_whose_probed_duration_is_not_a_short_decimal_takes_exports(
    api: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    """The probed duration is a float (e.g. 61 frames at 30 fps); it bounds segments without being
    read as a client's seconds."""
    await sql("UPDATE videos SET duration = :d WHERE id = :id", d=61 / 30, id=video_id)
    r = await request_export(api, video_id, {"segments": [{"start": "0", "end": "2.0333"}]})
    assert r.status_code == 202, r.text


async def test_segments_adding_up_to_four_times_the_video_are_accepted(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    r = await request_export(api, video_id, {"segments": [{"start": "0", "end": "2"}] * 4})
    assert r.status_code == 202, r.text


async def test_segments_adding_up_to_more_than_four_times_the_video_are_422_with_the_numbers(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    r = await request_export(api, video_id, {"segments": [{"start": "0", "end": "2"}] * 500})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"] == [
        {
            "field": "body.segments",
            "message": "the segments add up to 1000 s of output, more than the 8 s allowed "
            "(4 times the video's 2 s, and at most MAX_OUTPUT_SECONDS = 43200 s)",
        }
    ]


async def test_max_output_seconds_caps_the_summed_output_below_four_times_the_video(
    make_export_settings: MakeSettings, clip: Path
) -> None:
    async with AsyncTestClient(app=create_app(make_export_settings(max_output_seconds=3))) as c:
        await register(c, "capped@example.com")
        video = await upload(c, clip)
        fits = await request_export(c, video, {"segments": [{"start": "0", "end": "1.5"}] * 2})
        r = await request_export(c, video, {"segments": [{"start": "0", "end": "2"}] * 2})
    assert fits.status_code == 202, fits.text
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {
            "field": "body.segments",
            "message": "the segments add up to 4 s of output, more than the 3 s allowed "
            "(4 times the video's 2 s, and at most MAX_OUTPUT_SECONDS = 3 s)",
        }
    ]


@pytest.mark.parametrize("body", [{}, {"segments": []}], ids=["omitted", "empty"])
async def test_no_segments_means_the_whole_video(
    api: AsyncTestClient[Any], video_id: str, body: dict[str, Any]
) -> None:
    r = await request_export(api, video_id, body)
    assert r.status_code == 202, r.text
    assert r.json()["segments"] == []


async def test_an_unknown_video_is_404(api: AsyncTestClient[Any]) -> None:
    r = await request_export(api, UNKNOWN)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_another_users_video_is_404_and_nothing_is_queued(
    api: AsyncTestClient[Any], export_settings: Settings, video_id: str, queue: RedisQueue
) -> None:
    async with AsyncTestClient(app=create_app(export_settings)) as other:
        await register(other, "intruder@example.com")
        r = await request_export(other, video_id)
    assert r.status_code == 404
    assert r.json()["detail"] == "not found"
    assert (await queue.info())["queued"] == 0


async def test_a_video_that_is_not_ready_is_409(api: AsyncTestClient[Any], video_id: str, sql: Sql) -> None:
    await sql("UPDATE videos SET status = 'probing' WHERE id = :id", id=video_id)
    r = await request_export(api, video_id)
    assert r.status_code == 409
    assert r.json()["detail"] == "video is not ready"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"segments": [{"start": "1", "end": "0.5"}]}, "body.segments[0].end", "must be after start"),
        ({"segments": [{"start": -1, "end": "0.5"}]}, "body.segments[0].start", "must not be negative"),
        (
            {"segments": [{"start": "0", "end": "1"}, {"start": "1", "end": "2.5"}]},
            "body.segments[1].end",
            "is past the end of the video (2 s)",
        ),
        (
            {"segments": [{"start": "0", "end": "soon"}]},
            "body.segments[0].end",
            "must be a number of seconds, e.g. 12.5",
        ),
        ({"mode": "clips"}, "body.segments", "clips mode needs at least one segment"),
        ({"format": "webm", "codec": "h264"}, "body.codec", "h264 cannot go in webm (allowed: vp9, av1)"),
        ({"codec": "av1", "quality": "lossless"}, "body.quality", "lossless is not available for av1"),
    ],
)
async def test_a_request_breaking_the_contract_is_422_naming_the_field(
    api: AsyncTestClient[Any], video_id: str, body: dict[str, Any], field: str, message: str
) -> None:
    r = await request_export(api, video_id, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"] == [{"field": field, "message": message}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resolution": "4k"}, "body.resolution"),
        ({"format": "avi"}, "body.format"),
        ({"codec": "mpeg2"}, "body.codec"),
        ({"segments": [{"start": "0", "end": "1", "speed": 2}]}, "body.segments[0].speed"),
        ({"resolutoin": "720p"}, "body.resolutoin"),
        ({"segments": [{"start": None, "end": "1"}]}, "body.segments[0].start"),
    ],
)
async def test_a_body_of_the_wrong_shape_is_422_naming_the_field(
    api: AsyncTestClient[Any], video_id: str, body: dict[str, Any], field: str
) -> None:
    """Like the render contract's own errors: the body was read, and a field of it is wrong."""
    r = await request_export(api, video_id, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_an_oversized_body_is_413_before_it_is_parsed(api: AsyncTestClient[Any], video_id: str) -> None:
    body = {"segments": [{"start": "0", "end": "1"}] * 20_000}  # ~480 KB > MAX_JSON_BODY_KB (256)
    r = await request_export(api, video_id, body)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_an_idempotent_retry_returns_the_same_export_with_200_and_queues_nothing_more(
    api: AsyncTestClient[Any], video_id: str, queue: RedisQueue
) -> None:
    first = await request_export(api, video_id, None, **{"Idempotency-Key": "render-1"})
    again = await request_export(api, video_id, None, **{"Idempotency-Key": "render-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert [e["id"] for e in (await api.get("/api/exports")).json()["items"]] == [first.json()["id"]]
    assert (await queue.info())["queued"] == 1


async def test_an_equivalent_retry_counts_as_the_same_request(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    """Defaults spelled out and seconds written differently normalise to the same render."""
    first = await request_export(
        api, video_id, {"segments": [{"start": 0.5, "end": "1.50"}]}, **{"Idempotency-Key": "k"}
    )
    body = {
        "segments": [{"start": "1/2", "end": 1.5}],
        "format": "mp4",
        "codec": "h264",
        "resolution": "source",
    }
    again = await request_export(api, video_id, body, **{"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]


async def test_the_same_key_with_a_different_request_is_422(api: AsyncTestClient[Any], video_id: str) -> None:
    await request_export(api, video_id, None, **{"Idempotency-Key": "render-1"})
    r = await request_export(api, video_id, {"resolution": "480p"}, **{"Idempotency-Key": "render-1"})
    assert r.status_code == 422
    assert r.json()["detail"] == "Idempotency-Key reused with a different request"


async def test_keys_belong_to_their_user(
    api: AsyncTestClient[Any], export_settings: Settings, clip: Path, video_id: str
) -> None:
    mine = await request_export(api, video_id, None, **{"Idempotency-Key": "shared"})
    async with AsyncTestClient(app=create_app(export_settings)) as other:
        await register(other, "other@example.com")
        theirs = await request_export(other, await upload(other, clip), None, **{"Idempotency-Key": "shared"})
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert theirs.json()["id"] != mine.json()["id"]


async def test_concurrent_retries_with_one_key_create_one_export_and_one_job(
    api: AsyncTestClient[Any], export_settings: Settings, video_id: str, queue: RedisQueue
) -> None:
    async def attempt() -> Any:
        return await request_export(api, video_id, None, **{"Idempotency-Key": "race"})

    answers = await asyncio.gather(*(attempt() for _ in range(5)))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 200, 202]
    assert len({r.json()["id"] for r in answers}) == 1
    assert (await queue.info())["queued"] == 1


async def test_an_overlong_idempotency_key_is_422_naming_the_header(
    api: AsyncTestClient[Any], video_id: str
) -> None:
    r = await request_export(api, video_id, None, **{"Idempotency-Key": "k" * 256})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["header.Idempotency-Key"]


async def test_too_many_active_exports_is_429_with_retry_after(
    make_export_settings: MakeSettings, clip: Path, sql: Sql
) -> None:
    async with AsyncTestClient(app=create_app(make_export_settings(max_active_exports=2))) as c:
        await register(c, "busy@example.com")
        video = await upload(c, clip)
        first = await request_export(c, video)
        assert (await request_export(c, video)).status_code == 202
        r = await request_export(c, video)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "30"
        assert r.json()["detail"] == "at most 2 exports may be pending or processing at once"
        await sql("UPDATE exports SET status = 'completed' WHERE id = :id", id=first.json()["id"])
        assert (await request_export(c, video)).status_code == 202


async def test_more_than_the_rate_limit_per_minute_is_429_with_retry_after(
    make_export_settings: MakeSettings, clip: Path
) -> None:
    async with AsyncTestClient(app=create_app(make_export_settings(export_requests_per_minute=3))) as c:
        await register(c, "script@example.com")
        video = await upload(c, clip)
        statuses = [(await request_export(c, video, {"mode": "clips"})).status_code for _ in range(3)]
        r = await request_export(c, video)
    assert statuses == [422, 422, 422]  # invalid requests count too: the limit protects the service
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["detail"] == "at most 3 export requests a minute"


async def test_when_the_queue_is_down_the_export_is_still_accepted_and_left_pending(
    export_settings: Settings, clip: Path, queue: RedisQueue
) -> None:
    """The reconciler enqueues pending exports later; the client sees an ordinary 202."""
    app = create_app(export_settings)
    async with AsyncTestClient(app=app) as c:
        await register(c, "owner@example.com")
        video = await upload(c, clip)
        working = app.state.queue
        app.state.queue = RedisQueue.from_url("redis://127.0.0.1:1", name="unreachable")
        try:
            r = await request_export(c, video)
        finally:
            app.state.queue = working
        assert r.status_code == 202
        assert (await c.get(r.headers["location"])).json()["status"] == "pending"
        assert await queue.job(r.json()["id"]) is None
