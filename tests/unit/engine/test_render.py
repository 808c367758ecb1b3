"""Single-file renders decoded back: exactly the frames inside the segments, in order, in sync."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import pytest

from gpu_worker.contract import ContractError, RenderRequest
from gpu_worker.encoders.base import DecodedFrame, VideoTarget
from gpu_worker.encoders.cpu import CpuBackend, CpuEncoder
from gpu_worker.engine import MediaError, RenderResult, render
from gpu_worker.engine.source import probe
from tests.media import (
    Decoded,
    MadeVideo,
    atom_order,
    decode_output,
    make_corrupt,
    make_garbage,
    make_truncated,
    make_video,
    pattern,
    read_frame_index,
)

F = Fraction
Run = Callable[..., RenderResult]
Req = Callable[..., RenderRequest]


def expected(source: MadeVideo, *segments: tuple[str, str]) -> list[int]:
    return [i for start, end in segments for i in source.frames_in(F(start), F(end))]


def assert_in_sync(out: Decoded) -> None:
    """Timestamps start at 0 and rise; audio starts at 0 and lasts as long as video, within one
    audio frame."""
    assert out.times[0] == 0
    assert out.times == sorted(set(out.times))
    assert out.dts_monotonic
    assert abs(out.audio_duration - out.video_duration) <= F(out.audio_frame_size, out.audio_rate)
    if out.audio_codec is not None:
        assert out.audio_start is not None
        assert abs(out.audio_start) < F(out.audio_frame_size, out.audio_rate)


def test_cfr_segments_hold_exactly_their_frames_in_order(cfr25: MadeVideo, run: Run, req: Req) -> None:
    segments = [("0.5", "1.0"), ("0.1", "0.3"), ("1.52", "2")]
    result = run(cfr25, req(segments))
    out = decode_output(result.path)
    assert out.indices == expected(cfr25, *segments) == [*range(13, 25), *range(3, 8), *range(38, 50)]
    assert result.frames == len(out.indices) == 29
    assert (out.video_codec, out.width, out.height) == ("h264", 320, 180)
    assert out.video_duration == result.duration == F(29, 25)
    assert_in_sync(out)


def test_cfr_output_frames_are_evenly_spaced_across_joins(cfr25: MadeVideo, run: Run, req: Req) -> None:
    out = decode_output(run(cfr25, req([("0.5", "1.0"), ("0.1", "0.3")])).path)
    assert out.times == [F(i, 25) for i in range(17)]


def test_empty_segment_list_renders_the_whole_video(cfr25: MadeVideo, run: Run, req: Req) -> None:
    out = decode_output(run(cfr25, req()).path)
    assert out.indices == list(range(50))
    assert out.video_duration == F(2)
    assert_in_sync(out)


def test_ntsc_cut_points_between_frames_keep_start_le_t_lt_end(ntsc: MadeVideo, run: Run, req: Req) -> None:
    segments = [("0.5", "0.9009"), ("1.001", "1.5")]
    out = decode_output(run(ntsc, req(segments)).path)
    assert out.indices == expected(ntsc, *segments)
    assert (out.indices[0], out.indices[-1]) == (15, 44)
    assert_in_sync(out)


def test_60fps_source(fps60: MadeVideo, run: Run, req: Req) -> None:
    segments = [("0.25", "0.5"), ("0", "0.1")]
    out = decode_output(run(fps60, req(segments)).path)
    assert out.indices == expected(fps60, *segments) == [*range(15, 30), *range(6)]
    assert out.audio_rate == 44100
    assert_in_sync(out)


def test_vfr_source_keeps_relative_timing_and_offsets_later_segments(
    vfr: MadeVideo, run: Run, req: Req
) -> None:
    segments = [("1.0", "1.6"), ("0.2", "0.7")]
    out = decode_output(run(vfr, req(segments)).path)
    first, second = vfr.frames_in(F(1), F(8, 5)), vfr.frames_in(F(1, 5), F(7, 10))
    assert out.indices == first + second
    times = vfr.frame_times
    first_span = times[first[-1] + 1] - times[first[0]]
    want = [times[i] - times[first[0]] for i in first] + [
        first_span + times[i] - times[second[0]] for i in second
    ]
    assert out.times == want
    assert_in_sync(out)


def test_rotation_is_carried_as_display_matrix(rotated: MadeVideo, run: Run, req: Req) -> None:
    """A 640x360 picture shown turned (portrait 360x640) fits 360p's turned box (360x640) as it is;
    fitting the unturned 640x360 box would shrink it to 360x202."""
    result = run(rotated, req([("0", "0.5")], resolution="360p"))
    out = decode_output(result.path)
    assert out.rotation == 90
    assert (out.width, out.height) == (result.width, result.height) == (640, 360)
    assert out.indices == list(range(13))


def test_downscale_keeps_aspect_and_frames_readable(tmp_path: Path, run: Run, req: Req) -> None:
    source = make_video(tmp_path / "big.mp4", seconds=1, width=854, height=480, audio=False)
    result = run(source, req([("0.2", "0.6")], resolution="360p"))
    out = decode_output(result.path)
    assert (out.width, out.height) == (640, 360)
    assert out.indices == list(range(5, 15))


def test_odd_sized_source_gives_even_output(odd: MadeVideo, run: Run, req: Req) -> None:
    result = run(odd, req([("0", "1")]))
    out = decode_output(result.path)
    assert (out.width, out.height) == (320, 180)
    assert out.indices == list(range(25))
    assert_in_sync(out)


def test_source_without_audio_gives_video_only(silent: MadeVideo, run: Run, req: Req) -> None:
    out = decode_output(run(silent, req([("0.2", "0.4"), ("0.6", "0.8")])).path)
    assert out.audio_codec is None
    assert out.indices == [5, 6, 7, 8, 9, 15, 16, 17, 18, 19]


def test_10_bit_source_stays_10_bit_in_hevc(ten_bit: MadeVideo, run: Run, req: Req) -> None:
    out = decode_output(run(ten_bit, req([("0", "0.4")], codec="hevc")).path)
    assert (out.video_codec, out.pix_fmt) == ("hevc", "yuv420p10le")
    assert out.indices == list(range(10))


def test_10_bit_source_becomes_8_bit_h264(ten_bit: MadeVideo, run: Run, req: Req) -> None:
    out = decode_output(run(ten_bit, req([("0", "0.4")])).path)
    assert (out.video_codec, out.pix_fmt) == ("h264", "yuv420p")
    assert out.indices == list(range(10))


def test_audio_before_first_video_frame_is_cut_to_the_video(
    late_video: MadeVideo, run: Run, req: Req
) -> None:
    out = decode_output(run(late_video, req([("0.5", "1.5")])).path)
    assert out.indices == list(range(13))
    assert out.video_duration == F(13, 25)
    assert_in_sync(out)


def test_mp4_is_faststart(cfr25: MadeVideo, run: Run, req: Req) -> None:
    order = atom_order(run(cfr25, req([("0", "0.5")])).path)
    assert order.index("moov") < order.index("mdat")


def test_result_reports_what_was_written(cfr25: MadeVideo, run: Run, req: Req) -> None:
    result = run(cfr25, req([("0", "1")]))
    assert (result.frames, result.duration, result.codec, result.encoder_used) == (
        25,
        F(1),
        "h264",
        "libx264",
    )
    assert result.size_bytes == result.path.stat().st_size > 0


def test_segment_past_the_end_is_refused_naming_the_field(cfr25: MadeVideo, run: Run, req: Req) -> None:
    with pytest.raises(ContractError) as caught:
        run(cfr25, req([("0", "1"), ("1.5", "2.04")]))
    assert caught.value.field == "segments[1].end"


def test_segment_between_two_frames_is_refused(cfr25: MadeVideo, run: Run, req: Req) -> None:
    with pytest.raises(ContractError) as caught:
        run(cfr25, req([("0.01", "0.02")]))
    assert caught.value.field == "segments[0]"


def test_garbage_source_fails_with_media_error_and_leaves_nothing(tmp_path: Path, req: Req) -> None:
    source = make_garbage(tmp_path / "in.mp4")
    with pytest.raises(MediaError):
        render(req(), source, tmp_path / "out.mp4", backend=CpuBackend())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_source_truncated_after_its_index_renders_what_is_readable_quickly(tmp_path: Path, req: Req) -> None:
    source = make_truncated(tmp_path / "cut.mp4", keep_index=True)
    started = time.monotonic()
    result = render(req(), source, tmp_path / "out.mp4", backend=CpuBackend())
    assert time.monotonic() - started < 5
    out = decode_output(result.path)
    assert 0 < len(out.indices) < 50
    assert out.indices == list(range(len(out.indices)))
    assert_in_sync(out)


def test_corrupt_media_data_never_hangs(tmp_path: Path, req: Req) -> None:
    source = make_corrupt(tmp_path / "corrupt.mp4")
    started = time.monotonic()
    written = ["out.mp4"]
    try:
        render(req(), source, tmp_path / "out.mp4", backend=CpuBackend())
    except MediaError:
        written = []
    assert time.monotonic() - started < 5
    # Either the whole output or nothing: never a partial file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mp4", *written]


def _source_times(path: Path) -> list[Fraction]:
    """Frame times relative to the file's start (container start_time), in decode order."""
    with av.open(str(path)) as container:
        stream, origin = container.streams.video[0], F(container.start_time or 0, 1_000_000)
        return [F(f.pts) * stream.time_base - origin for f in container.decode(stream)]


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_other_containers_cut_relative_to_the_file_start(
    tmp_path: Path, run: Run, req: Req, suffix: str
) -> None:
    """MPEG-TS starts at a non-zero timestamp and seeks coarsely; Matroska has a 1 ms time base."""
    source = make_video(tmp_path / f"in{suffix}", seconds=2)
    times = _source_times(source.path)
    out = decode_output(run(source, req([("0.5", "1.5"), ("0", "0.2")])).path)
    want = [i for i, t in enumerate(times) if F(1, 2) <= t < F(3, 2)]
    want += [i for i, t in enumerate(times) if 0 <= t < F(1, 5)]
    assert out.indices == want
    assert_in_sync(out)


def test_avi_with_b_frames_is_refused_rather_than_misordered(tmp_path: Path, req: Req) -> None:
    """AVI stores no presentation times; FFmpeg's guesses reorder B-frames wrongly."""
    source = make_video(tmp_path / "in.avi", seconds=1)
    with pytest.raises(MediaError, match="out of order"):
        render(req(), source.path, tmp_path / "out.mp4", backend=CpuBackend())
    assert [p.name for p in tmp_path.iterdir()] == ["in.avi"]


def test_hevc_in_mp4_is_tagged_hvc1_for_apple_players(cfr25: MadeVideo, run: Run, req: Req) -> None:
    data = run(cfr25, req([("0", "0.4")], codec="hevc")).path.read_bytes()
    assert b"hvc1" in data
    assert b"hev1" not in data


def test_hevc_in_mov_is_tagged_hvc1(tmp_path: Path) -> None:
    path = tmp_path / "out.mov"
    with av.open(str(path), "w") as out:
        encoder = CpuEncoder(out, VideoTarget("hevc", 64, 36, F(25), F(1, 25), "draft"))
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(pattern(i, 64, 36), format="rgb24")
            encoder.encode(DecodedFrame(F(i, 25), frame), i)
        encoder.flush()
    data = path.read_bytes()
    assert b"hvc1" in data
    assert b"hev1" not in data


def test_full_range_bt709_source_stays_full_range_and_tagged(tmp_path: Path, run: Run, req: Req) -> None:
    source = make_video(tmp_path / "full.mp4", seconds=1, pix_fmt="yuvj420p", bt709=True, audio=False)
    info = probe(source.path)
    assert (info.color_range, info.colorspace, info.color_primaries, info.color_trc) == (2, 1, 1, 1)
    result = run(source, req([("0", "0.6")], quality="high"))
    with av.open(str(result.path)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc) == (2, 1, 1, 1)
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 5)  # cells: 0b101
    assert read_frame_index(frame) == 5
    assert frame.format.name == "yuvj420p"  # FFmpeg's H.264 decoder names full-range 4:2:0 so
    luma = frame.to_ndarray()[: frame.height]  # the raw Y plane, no range conversion
    # Black and white cells keep the full 0..255 swing (limited range would be 16..235).
    assert luma.min() <= 4
    assert luma.max() >= 251


def test_untagged_source_output_declares_no_colour(cfr25: MadeVideo, run: Run, req: Req) -> None:
    assert probe(cfr25.path).color_range is None
    with av.open(str(run(cfr25, req([("0", "0.2")])).path)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc) == (0, 2, 2, 2)
