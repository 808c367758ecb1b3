"""A real export from request to decoded file: API → queue → `vexport worker` process → store → download."""

from __future__ import annotations

import io
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest

from gpu_worker.contract import Segment, fit_size
from gpu_worker.engine.clips import clip_name
from gpu_worker.store import StoreSettings, content_disposition
from tests.e2e.conftest import Deploy
from tests.media import MadeVideo, decode_output

pytestmark = pytest.mark.slow

SEGMENTS = [("0.4", "1.2"), ("1.6", "2.0"), ("2.4", "2.96")]
"""Three cuts of the 3 s source: 20 + 10 + 14 frames at 25 fps."""
BODY = {
    "resolution": "360p",
    "quality": "standard",
    "format": "mp4",
    "codec": "h264",
    "segments": [{"start": start, "end": end} for start, end in SEGMENTS],
}
AAC_FRAME_S = Fraction(1024, 48000)


def frames_of(source: MadeVideo, start: str, end: str) -> list[int]:
    return source.frames_in(Fraction(start), Fraction(end))


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> StoreSettings | None:
    """Both storage backends: None is the deployment's local store."""
    return request.getfixturevalue("s3_store_settings") if request.param == "s3" else None


async def test_a_single_file_export_is_rendered_by_a_worker_process_and_downloads_frame_exact(
    deploy: Deploy, storage: StoreSettings | None, source: MadeVideo, tmp_path: Path
) -> None:
    app = await deploy(storage=storage)
    await app.start_worker()
    video_id = await app.upload(source)

    requested = await app.export(video_id, BODY)
    assert (requested["status"], requested["attempt"], requested["encoder_requested"]) == (
        "pending",
        0,
        "auto",
    )
    export = await app.finished(requested["id"])

    assert (export["status"], export["progress"], export["attempt"], export["error"]) == (
        "completed",
        100,
        1,
        None,
    )
    assert (export["encoder_requested"], export["encoder_used"], export["fallback_reason"]) == (
        "auto",
        "libx264",
        "no healthy GPU worker with NVENC H.264 is online",  # routing's reason: no GPU worker ran
    )
    assert export["download_url"] == f"/api/exports/{export['id']}/download"

    response = await app.download(export["id"])
    assert response.headers["content-disposition"] == content_disposition("holiday clip (180p).mp4")
    assert int(response.headers["content-length"]) == export["size_bytes"] == len(response.content)
    output = tmp_path / "download.mp4"
    output.write_bytes(response.content)
    decoded = decode_output(output)

    wanted = [i for start, end in SEGMENTS for i in frames_of(source, start, end)]
    assert len(decoded.indices) == len(wanted) == 44
    assert decoded.indices == wanted
    assert (decoded.width, decoded.height) == fit_size(source.width, source.height, "360p") == (320, 180)
    assert decoded.video_codec == "h264"
    span = sum((Fraction(end) - Fraction(start) for start, end in SEGMENTS), Fraction(0))
    assert decoded.audio_codec == "aac"
    assert abs(decoded.audio_duration - span) <= 2 * AAC_FRAME_S
    assert app.stored_export_keys() == [f"exports/{app.owner.user_id}/{export['id']}/holiday_clip.mp4"]


async def test_a_clips_export_is_a_zip_of_one_frame_exact_file_per_segment(
    deploy: Deploy, source: MadeVideo, tmp_path: Path
) -> None:
    app = await deploy()
    await app.start_worker()
    video_id = await app.upload(source)

    export = await app.finished((await app.export(video_id, {**BODY, "mode": "clips"}))["id"])

    assert (export["status"], export["mode"], export["encoder_used"]) == ("completed", "clips", "libx264")
    segments = [Segment(start=Fraction(start), end=Fraction(end)) for start, end in SEGMENTS]
    names = [clip_name(number, segment, "mp4") for number, segment in enumerate(segments, start=1)]
    assert [(c["name"], c["frames"]) for c in export["clips"]] == [
        (name, len(frames_of(source, start, end))) for name, (start, end) in zip(names, SEGMENTS, strict=True)
    ]
    response = await app.download(export["id"])
    assert response.headers["content-disposition"] == content_disposition("holiday clip (180p clips).zip")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == names
        archive.extractall(tmp_path / "clips")
    for name, (start, end) in zip(names, SEGMENTS, strict=True):
        decoded = decode_output(tmp_path / "clips" / name)
        assert decoded.indices == frames_of(source, start, end), name
        assert (decoded.width, decoded.height, decoded.video_codec) == (320, 180, "h264")
        assert decoded.audio_codec == "aac"
