"""The worker's conditional UPDATEs: a claim is taken once, and only the current attempt can write."""

from __future__ import annotations

import uuid

from gpu_worker.contract import ExportStatus, Phase, RenderRequest
from gpu_worker.fallback import Fallback, FallbackCode
from gpu_worker.rows import ClipRecord, ExportRows, RowState
from tests.integration.jobs.farm import Farm
from tests.media import MadeVideo


async def pending_export(farm: Farm, clip: MadeVideo) -> uuid.UUID:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    return await farm.add_export(user_id, video_id, RenderRequest())


async def test_claim_takes_a_pending_export_once(farm: Farm, rows: ExportRows, clip: MadeVideo) -> None:
    export_id = await pending_export(farm, clip)

    claim = await rows.claim(export_id, "box-1:100")

    assert claim is not None
    assert claim.attempt == 1
    assert claim.encoder_requested == "auto"
    assert claim.request == {
        "segments": [],
        "resolution": "source",
        "quality": "standard",
        "format": "mp4",
        "codec": "h264",
        "mode": "single",
        "encoder": "auto",
    }
    assert await rows.claim(export_id, "box-2:200") is None
    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["worker_id"], row["phase"], row["progress"]) == (
        ExportStatus.PROCESSING,
        1,
        "box-1:100",
        Phase.DOWNLOADING,
        0,
    )


async def test_a_stale_attempt_cannot_overwrite_the_current_one(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    export_id = await pending_export(farm, clip)
    stale = await rows.claim(export_id, "box-1:100")
    assert stale is not None
    assert await rows.reset_to_pending(stale.export_id, stale.attempt)
    current = await rows.claim(stale.export_id, "box-2:200")
    assert current is not None
    assert current.attempt == 2

    assert not await rows.update_progress(stale.export_id, 1, phase=Phase.RENDERING, progress=50)
    assert not await rows.fail(stale.export_id, 1, "late failure")
    assert not await rows.reset_to_pending(stale.export_id, 1)
    assert not await rows.complete(
        stale.export_id,
        1,
        output_key="exports/stale.mp4",
        size_bytes=1,
        duration=1.0,
        encoder_used="libx264",
        fallback=None,
    )
    assert await rows.status_of(stale.export_id) == RowState(ExportStatus.PROCESSING, 2)
    row = await farm.row(stale.export_id)
    assert (row["worker_id"], row["progress"], row["output_key"], row["error"]) == (
        "box-2:200",
        0,
        None,
        None,
    )

    clips = [ClipRecord("clip-001.mp4", "0", "1.5", 37)]
    assert await rows.complete(
        current.export_id,
        2,
        output_key="exports/current.zip",
        size_bytes=10,
        duration=1.5,
        encoder_used="libx264",
        fallback=Fallback(FallbackCode.GPU_UNAVAILABLE, "no NVIDIA driver"),
        clips=clips,
    )
    row = await farm.row(current.export_id)
    assert (row["status"], row["output_key"], row["progress"], row["phase"]) == (
        ExportStatus.COMPLETED,
        "exports/current.zip",
        100,
        None,
    )
    assert row["segments"]["clips"] == [{"name": "clip-001.mp4", "start": "0", "end": "1.5", "frames": 37}]
    assert row["segments"]["request"]["encoder"] == "auto"


async def test_a_cancelled_export_takes_no_more_writes(farm: Farm, rows: ExportRows, clip: MadeVideo) -> None:
    export_id = await pending_export(farm, clip)
    claim = await rows.claim(export_id, "box-1:100")
    assert claim is not None
    await farm.sql("UPDATE exports SET status = 'cancelled' WHERE id = :id", id=export_id)

    assert not await rows.update_progress(claim.export_id, 1, phase=Phase.UPLOADING, progress=99)
    assert not await rows.fail(claim.export_id, 1, "too late")
    assert await rows.status_of(claim.export_id) == RowState(ExportStatus.CANCELLED, 1)


async def idle_exports(farm: Farm, clip: MadeVideo, ages_s: list[int]) -> list[uuid.UUID]:
    """Processing exports last written `ages_s` seconds ago, in that order."""
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    return [
        await farm.add_export(user_id, video_id, RenderRequest(), status="processing", attempt=1, idle_s=age)
        for age in ages_s
    ]


async def test_the_idle_walk_visits_every_idle_row_oldest_first_across_pages(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    ids = await idle_exports(farm, clip, [50, 40, 30, 20, 10])

    walked = [row.export_id async for row in rows.idle(ExportStatus.PROCESSING, idle_s=15, page_size=2)]

    assert walked == ids[:4]


async def test_a_row_written_during_the_idle_walk_is_not_visited_again(
    farm: Farm, rows: ExportRows, clip: MadeVideo
) -> None:
    ids = await idle_exports(farm, clip, [50, 40, 30])

    walked = []
    async for row in rows.idle(ExportStatus.PROCESSING, page_size=1):
        walked.append(row.export_id)
        assert await rows.update_progress(row.export_id, 1, phase=Phase.RENDERING, progress=50)

    assert walked == ids
