"""Clips mode: one file per segment inside a stored, ZIP64, streamed ZIP."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from gpu_worker.contract import RenderRequest, Segment
from gpu_worker.engine import RenderResult
from gpu_worker.engine.clips import clip_name
from gpu_worker.engine.zipstream import ZipStreamWriter
from tests.media import MadeVideo, decode_output


def test_clip_names_carry_number_and_requested_times() -> None:
    segment = Segment(Fraction(5), Fraction(25, 2))
    assert clip_name(1, segment, "mp4") == "clip-001_00-00-05.000-00-00-12.500.mp4"
    long = Segment(Fraction(3723001, 1000), Fraction(3724))
    assert clip_name(42, long, "webm") == "clip-042_01-02-03.001-01-02-04.000.webm"


def test_each_segment_becomes_one_clip_with_exactly_its_frames(
    cfr25: MadeVideo, run: Callable[..., RenderResult], req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    result = run(cfr25, req([("0.5", "1.0"), ("0.1", "0.3")], mode="clips"))
    names = ["clip-001_00-00-00.500-00-00-01.000.mp4", "clip-002_00-00-00.100-00-00-00.300.mp4"]
    assert result.entries == tuple(names)
    assert result.frames == 17
    assert result.duration == Fraction(17, 25)
    with zipfile.ZipFile(result.path) as archive:
        assert archive.namelist() == names
        assert archive.testzip() is None
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        archive.extractall(tmp_path / "clips")
    first, second = (decode_output(tmp_path / "clips" / name) for name in names)
    assert first.indices == list(range(13, 25))
    assert second.indices == list(range(3, 8))
    assert first.times[0] == second.times[0] == 0
    assert second.video_duration == Fraction(5, 25)
    assert abs(second.audio_duration - second.video_duration) <= Fraction(1024, 48000)


def test_clips_leave_only_the_zip_behind(
    cfr25: MadeVideo, run: Callable[..., RenderResult], req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    run(cfr25, req([("0", "0.2")], mode="clips", format="webm"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.zip"]


class _WriteOnly:
    """A sink that cannot seek or tell, like an upload stream."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buffer.write(data)


def test_zip_writer_streams_to_a_write_only_sink(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"alpha" * 1000)
    (tmp_path / "b.bin").write_bytes(b"")
    sink = _WriteOnly()
    writer = ZipStreamWriter(sink)
    writer.add_file("dir/a.bin", tmp_path / "a.bin")
    writer.add_file("b.bin", tmp_path / "b.bin")
    writer.close()
    assert writer.bytes_written == len(sink.buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(sink.buffer.getvalue())) as archive:
        assert archive.testzip() is None
        assert archive.read("dir/a.bin") == b"alpha" * 1000
        assert archive.read("b.bin") == b""
        assert [info.file_size for info in archive.infolist()] == [5000, 0]
