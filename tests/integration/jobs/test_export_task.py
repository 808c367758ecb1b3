"""export_video end to end: a pending row and a queued job in, a stored rendition and a completed row out."""

from __future__ import annotations

import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
from saq.job import Status

from gpu_worker.contract import (
    EncoderChoice,
    ExportStatus,
    Format,
    Mode,
    Phase,
    RenderRequest,
    Segment,
    export_channel,
    user_channel,
)
from gpu_worker.engine import MediaError, probe
from gpu_worker.fallback import FallbackCode
from gpu_worker.progress import read_snapshot
from gpu_worker.store import LocalStore
from gpu_worker.tasks.enqueue import enqueue_export
from tests.integration.jobs.farm import Farm, messages_until_terminal
from tests.media import MadeVideo, decode_indices

HALF = Segment(Fraction("0.5"), Fraction("1.5"))


async def fetch(farm: Farm, key: str, into: Path) -> Path:
    await farm.store.download_to(key, into)
    return into


async def test_single_export_renders_on_the_cpu_and_completes_the_row(
    farm: Farm, clip: MadeVideo, tmp_path: Path
) -> None:
    user_id, export_id = await farm.submit(clip.path, RenderRequest(segments=[HALF]))

    await farm.run_worker()

    row = await farm.row(export_id)
    assert row["status"] == ExportStatus.COMPLETED
    assert row["progress"] == 100
    assert row["phase"] is None
    assert row["attempt"] == 1
    assert row["error"] is None
    assert row["encoder_requested"] == "auto"
    assert row["encoder_used"] == "libx264"
    assert (row["fallback_code"], row["fallback_reason"]) == ("gpu_unavailable", "no NVIDIA driver")
    assert row["output_key"] == f"exports/{user_id}/{export_id}/holiday_clip.mp4"
    assert row["duration"] == pytest.approx(1.0, abs=0.001)
    assert row["started_at"] is not None
    assert row["finished_at"] >= row["started_at"]
    assert row["segments"]["clips"] == []
    output = await fetch(farm, row["output_key"], tmp_path / "out.mp4")
    assert row["size_bytes"] == output.stat().st_size
    assert decode_indices(output) == clip.frames_in(HALF.start, HALF.end)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert job.status is Status.COMPLETE
    assert job.result == "completed"
    assert farm.scratch_files() == []


async def test_progress_is_published_in_order_and_ends_with_the_terminal_state(
    farm: Farm, clip: MadeVideo
) -> None:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    export_id = await farm.add_export(user_id, video_id, RenderRequest())
    async with farm.redis.pubsub() as export_sub, farm.redis.pubsub() as user_sub:
        await export_sub.subscribe(export_channel(export_id))
        await user_sub.subscribe(user_channel(user_id))
        await enqueue_export(farm.queue, export_id)
        await farm.run_worker()
        messages = await messages_until_terminal(export_sub)
        user_messages = await messages_until_terminal(user_sub)

    assert user_messages == messages
    seqs = [m.seq for m in messages]
    assert seqs == sorted(set(seqs))
    assert {m.export_id for m in messages} == {str(export_id)}
    assert {m.attempt for m in messages} == {1}
    assert messages[0].status is ExportStatus.PROCESSING
    assert messages[0].phase is Phase.DOWNLOADING
    phases = [m.phase for m in messages[:-1]]
    assert phases.index(Phase.RENDERING) < phases.index(Phase.UPLOADING)
    percents = [m.percent for m in messages]
    assert percents == sorted(percents)
    frames_done = [m.frames_done for m in messages]
    assert frames_done == sorted(frames_done)
    last = messages[-1]
    assert last.frames_done == last.frames_total == len(clip.frame_times)
    assert last.status is ExportStatus.COMPLETED
    assert (last.percent, last.phase, last.encoder_used, last.fallback_code, last.fallback_reason) == (
        100,
        None,
        "libx264",
        FallbackCode.GPU_UNAVAILABLE,
        "no NVIDIA driver",
    )
    assert await read_snapshot(farm.redis, export_id) == last


async def test_every_message_of_an_export_routed_to_the_cpu_carries_the_fallback_its_row_has(
    farm: Farm, clip: MadeVideo
) -> None:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    export_id = await farm.add_export(user_id, video_id, RenderRequest())
    reason = "no healthy GPU worker with NVENC H.264 is online"
    await farm.sql(
        "UPDATE exports SET fallback_code = 'no_gpu_worker', fallback_reason = :reason WHERE id = :id",
        reason=reason,
        id=export_id,
    )
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))
        await enqueue_export(farm.queue, export_id)
        await farm.run_worker()
        messages = await messages_until_terminal(sub)

    assert len(messages) > 2
    assert {(m.fallback_code, m.fallback_reason) for m in messages} == {(FallbackCode.NO_GPU_WORKER, reason)}
    row = await farm.row(export_id)
    assert (row["fallback_code"], row["fallback_reason"]) == ("no_gpu_worker", reason)


async def test_clips_export_streams_a_zip_with_one_file_per_segment(farm: Farm, clip: MadeVideo) -> None:
    first, second = Segment(Fraction(0), Fraction("0.4")), Segment(Fraction(1), Fraction(2))
    request = RenderRequest(segments=[first, second], mode=Mode.CLIPS, encoder=EncoderChoice.CPU)
    user_id, export_id = await farm.submit(clip.path, request)

    await farm.run_worker()

    row = await farm.row(export_id)
    assert row["status"] == ExportStatus.COMPLETED
    assert (row["encoder_requested"], row["encoder_used"], row["fallback_reason"]) == ("cpu", "libx264", None)
    assert row["output_key"] == f"exports/{user_id}/{export_id}/holiday_clip.zip"
    names = ["clip-001_00-00-00.000-00-00-00.400.mp4", "clip-002_00-00-01.000-00-00-02.000.mp4"]
    assert row["segments"]["clips"] == [
        {"name": names[0], "start": "0", "end": "0.4", "frames": 10},
        {"name": names[1], "start": "1", "end": "2", "frames": 25},
    ]
    assert row["duration"] == pytest.approx(1.4, abs=0.001)
    assert isinstance(farm.store, LocalStore)
    archive_path = farm.store.local_path(row["output_key"])
    assert row["size_bytes"] == archive_path.stat().st_size
    with zipfile.ZipFile(archive_path) as archive:
        assert archive.namelist() == names
        for name, segment in zip(names, (first, second), strict=True):
            extracted = Path(archive.extract(name, farm.settings.data_dir / "unzipped"))
            assert decode_indices(extracted) == clip.frames_in(segment.start, segment.end)
    assert farm.scratch_files() == []


async def test_export_on_s3_downloads_the_source_and_uploads_the_rendition(
    s3_farm: Farm, clip: MadeVideo, tmp_path: Path
) -> None:
    user_id, export_id = await s3_farm.submit(clip.path, RenderRequest(segments=[HALF], format=Format.WEBM))

    await s3_farm.run_worker()

    row = await s3_farm.row(export_id)
    assert row["status"] == ExportStatus.COMPLETED
    assert row["output_key"] == f"exports/{user_id}/{export_id}/holiday_clip.webm"
    output = await fetch(s3_farm, row["output_key"], tmp_path / "out.webm")
    assert row["size_bytes"] == output.stat().st_size
    assert decode_indices(output) == clip.frames_in(HALF.start, HALF.end)
    assert s3_farm.scratch_files() == []


async def test_clips_export_on_s3_is_streamed_into_the_bucket(
    s3_farm: Farm, clip: MadeVideo, tmp_path: Path
) -> None:
    request = RenderRequest(segments=[HALF, Segment(Fraction(0), Fraction(2))], mode=Mode.CLIPS)
    _, export_id = await s3_farm.submit(clip.path, request)

    await s3_farm.run_worker()

    row = await s3_farm.row(export_id)
    assert row["status"] == ExportStatus.COMPLETED
    assert [c["frames"] for c in row["segments"]["clips"]] == [25, 50]
    archive_path = await fetch(s3_farm, row["output_key"], tmp_path / "clips.zip")
    with zipfile.ZipFile(archive_path) as archive:
        assert [info.file_size > 0 for info in archive.infolist()] == [True, True]
        assert archive.testzip() is None


async def test_unreadable_source_fails_the_export_with_the_media_error_and_no_retry(
    farm: Farm, garbage: Path
) -> None:
    with pytest.raises(MediaError) as expected:
        probe(garbage)
    _, export_id = await farm.submit(garbage, RenderRequest())
    async with farm.redis.pubsub() as sub:
        await sub.subscribe(export_channel(export_id))
        await farm.run_worker()
        messages = await messages_until_terminal(sub)

    row = await farm.row(export_id)
    assert (row["status"], row["error"], row["attempt"]) == (ExportStatus.FAILED, str(expected.value), 1)
    assert row["output_key"] is None
    assert messages[-1].status is ExportStatus.FAILED
    assert messages[-1].error == str(expected.value)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert (job.status, job.attempts, job.result) == (Status.COMPLETE, 1, "failed")
    assert farm.scratch_files() == []


async def test_an_export_that_is_no_longer_pending_is_skipped(farm: Farm, clip: MadeVideo) -> None:
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    export_id = await farm.add_export(user_id, video_id, RenderRequest(), status="cancelled")
    await enqueue_export(farm.queue, export_id)

    await farm.run_worker()

    row = await farm.row(export_id)
    assert (row["status"], row["attempt"], row["output_key"]) == (ExportStatus.CANCELLED, 0, None)
    job = await farm.queue.job(str(export_id))
    assert job is not None
    assert job.result == "skipped"
