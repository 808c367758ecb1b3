"""The one seek both backends use: demux starts on a keyframe at or before the wanted time."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from gpu_worker.encoders.cpu import CpuBackend
from gpu_worker.encoders.nvenc import iter_decoder_packets
from gpu_worker.engine.source import demux_from
from tests.media import MadeVideo, make_video, read_frame_index

STARTS = [Fraction(0), Fraction(1, 2), Fraction(1), Fraction(3, 2), Fraction(2)]


@pytest.fixture(scope="module", params=[".ts", ".mkv", ".mp4"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    folder = tmp_path_factory.mktemp("seek")
    return make_video(folder / f"in{request.param}", seconds=3, audio=False)


@pytest.mark.parametrize("start", STARTS)
def test_gpu_feed_starts_on_a_keyframe_at_or_before_start(source: MadeVideo, start: Fraction) -> None:
    """MPEG-TS seeks land mid-GOP (or past the first keyframe): NVDEC must still get a keyframe first."""
    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        origin = Fraction(stream.start_time or 0) * stream.time_base
        head = next(iter_decoder_packets(container, stream, origin + start))
        assert head.is_keyframe
        assert Fraction(head.pts) * stream.time_base - origin <= start


def test_mpegts_start_at_the_first_frame_does_not_skip_the_first_keyframe(source: MadeVideo) -> None:
    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        origin = Fraction(stream.start_time or 0) * stream.time_base
        head = next(demux_from(container, stream, origin))
        assert (head.is_keyframe, Fraction(head.pts) * stream.time_base) == (True, origin)


def test_demux_from_yields_every_later_packet_once(source: MadeVideo) -> None:
    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        origin = Fraction(stream.start_time or 0) * stream.time_base
        everything = [p.pts for p in demux_from(container, stream, origin)]
        again = [p.pts for p in demux_from(container, stream, origin)]
    assert everything == again
    assert len(everything) == len(source.frame_times) == len(set(everything))


def test_cpu_decoder_cuts_a_mpegts_source_from_any_start(tmp_path: Path) -> None:
    made = make_video(tmp_path / "in.ts", seconds=3, audio=False)
    with av.open(str(made.path)) as container:
        stream = container.streams.video[0]
        origin = Fraction(stream.start_time or 0) * stream.time_base
        decoder = CpuBackend().open_decoder(container, stream)
        for start in STARTS:
            got = [
                read_frame_index(f.payload)
                for f in decoder.frames(origin + start, origin + start + Fraction(2, 5))
                if f.time >= origin + start
            ]
            assert got == made.frames_in(start, start + Fraction(2, 5))
