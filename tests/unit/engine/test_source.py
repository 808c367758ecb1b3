"""Input hardening and probing: only local media files, within limits, clear errors, never a hang."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gpu_worker.engine.source import MediaError, probe
from tests.media import MadeVideo, make_garbage, make_truncated, make_video


def test_probe_describes_a_cfr_source(cfr25: MadeVideo) -> None:
    info = probe(cfr25.path)
    assert (info.width, info.height, info.rotation) == (320, 180, 0)
    assert info.duration == Fraction(2)
    assert info.frame_rate == "25/1"
    assert (info.video_codec, info.pix_fmt, info.bit_depth, info.frame_count) == ("h264", "yuv420p", 8, 50)
    assert (info.audio_codec, info.audio_channels, info.audio_layout, info.audio_rate) == (
        "aac",
        2,
        "stereo",
        48000,
    )
    assert info.container == "mov,mp4,m4a,3gp,3g2,mj2"


def test_probe_reads_an_ntsc_rate_as_a_rational(ntsc: MadeVideo) -> None:
    assert probe(ntsc.path).frame_rate == "30000/1001"


def test_probe_reads_the_display_rotation(rotated: MadeVideo) -> None:
    info = probe(rotated.path)
    assert (info.width, info.height, info.rotation) == (640, 360, 90)


def test_probe_reports_bit_depth_of_10_bit_sources(ten_bit: MadeVideo) -> None:
    info = probe(ten_bit.path)
    assert (info.video_codec, info.pix_fmt, info.bit_depth) == ("hevc", "yuv420p10le", 10)


def test_probe_of_a_silent_video_has_no_audio(silent: MadeVideo) -> None:
    info = probe(silent.path)
    assert info.audio_codec is None
    assert not info.has_audio


def test_garbage_fails_fast_with_a_media_error(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError, match="not a readable video"):
        probe(make_garbage(tmp_path / "garbage.mp4"))
    assert time.monotonic() - started < 2


def test_truncated_file_fails_fast_with_a_media_error(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError, match="not a readable video"):
        probe(make_truncated(tmp_path / "truncated.mp4"))
    assert time.monotonic() - started < 2


def test_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="missing"):
        probe(tmp_path / "nope.mp4")


def test_hls_playlist_is_refused(tmp_path: Path, cfr25: MadeVideo) -> None:
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{cfr25.path}\n#EXT-X-ENDLIST\n")
    with pytest.raises(MediaError):
        probe(playlist)


def test_concat_script_is_refused(tmp_path: Path, cfr25: MadeVideo) -> None:
    script = tmp_path / "list.txt"
    script.write_text(f"ffconcat version 1.0\nfile '{cfr25.path}'\n")
    with pytest.raises(MediaError):
        probe(script)


def test_image_file_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24").save(str(image))
    with pytest.raises(MediaError):
        probe(image)


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(MediaError, match="no video stream"):
        probe(path)


def test_too_many_streams_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.mkv"
    with av.open(str(path), "w") as out:
        streams = [out.add_stream("libx264", rate=25) for _ in range(17)]
        for stream in streams:
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for stream in streams:
            frame = av.VideoFrame(64, 64, "yuv420p")
            frame.pts = 0
            out.mux(stream.encode(frame))
            out.mux(stream.encode())
    with pytest.raises(MediaError, match="too many streams"):
        probe(path)


def _strip_duration(path: Path) -> Path:
    """What a browser's MediaRecorder writes: WebM whose Segment Info has no Duration element.

    FFmpeg writes Duration as an 8-byte float (ID 0x4489, size 0x88); it becomes a Void element
    (ID 0xEC) of the same total size, so every other offset in the file stays valid.
    """
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88", 0, 4096)
    assert at > 0
    data[at : at + 11] = b"\xec\x89" + bytes(9)
    stripped = path.with_name(f"no-duration-{path.name}")
    stripped.write_bytes(bytes(data))
    return stripped


def test_webm_without_a_duration_element_gets_its_duration_from_the_packets(tmp_path: Path) -> None:
    made = make_video(tmp_path / "rec.webm", seconds=1.5, codec="vp9")
    source = _strip_duration(made.path)
    with av.open(str(source)) as container:
        assert container.duration is None
    info = probe(source)
    # The end of the last packet: the Opus track's, in whole 20 ms packets at 1 ms ticks; the
    # muxer's own Duration differs only by Opus's pre-skip (the first packet starts at -7 ms).
    assert info.duration == Fraction(1482, 1000)
    assert abs(info.duration - probe(made.path).duration) <= Fraction(7, 1000)
    assert info.duration >= made.frame_times[-1] + 1 / made.fps
