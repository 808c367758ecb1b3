"""The CPU-checkable parts of the NVENC backend: muxing Annex-B output the way NVENC returns it
(decode order, pts echoed, B-frames), and the host path's packed-plane conversions."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gpu_worker.encoders.base import VideoTarget
from gpu_worker.encoders.nvenc import (
    GpuBackendError,
    NvencBackend,
    PacketWriter,
    frame_to_planes,
    planes_to_frame,
)
from tests.media import pattern, read_frame_index

_STAND_INS = {  # software encoders producing in-band headers, as NVENC does
    "h264": ("libx264", {"preset": "ultrafast", "x264-params": "bframes=2:b-pyramid=none:keyint=12"}, 2),
    "hevc": (
        "libx265",
        {"preset": "ultrafast", "x265-params": "bframes=2:b-pyramid=0:keyint=12:log-level=none"},
        2,
    ),
    "av1": ("libsvtav1", {"preset": "12"}, 0),
}


def _fake_nvenc(codec: str, count: int, time_base: Fraction, step: int) -> tuple[list[dict], int]:
    """Encode `count` pattern frames; return NVENC-style dicts in decode order and the B-frame depth."""
    name, options, b_frames = _STAND_INS[codec]
    encoder = av.CodecContext.create(name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = 128, 96, "yuv420p"
    encoder.time_base, encoder.framerate = time_base, Fraction(1, step) / time_base
    encoder.options = options
    packets = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(pattern(i, 128, 96), format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * step, time_base
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    dicts = [
        {"data": bytes(p), "timestamp": p.pts, "picture_type": 3 if p.is_keyframe else 0} for p in packets
    ]
    return dicts, b_frames


@pytest.mark.parametrize("codec", ["h264", "hevc", "av1"])
def test_packet_writer_muxes_nvenc_style_output_into_a_playable_mp4(tmp_path: Path, codec: str) -> None:
    time_base, step, count = Fraction(1, 12800), 512, 30  # 25 fps in an MP4-style time base
    packets, b_frames = _fake_nvenc(codec, count, time_base, step)
    path = tmp_path / f"out-{codec}.mp4"
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as output:
        stream = output.add_mux_stream(codec, rate=25, width=128, height=96, time_base=time_base)
        writer = PacketWriter(output, stream, time_base, step, b_frames)
        for i in range(count):
            writer.note_input(i * step)
        writer.write(packets)
    with av.open(str(path)) as result:
        video = result.streams.video[0]
        assert video.codec_context.codec.canonical_name == codec
        dts = [p.dts for p in result.demux(video) if p.size]
        assert dts == sorted(set(dts))
        result.seek(0)
        frames = list(result.decode(video))
    assert [read_frame_index(f) for f in frames] == list(range(count))
    assert [f.pts * f.time_base for f in frames] == [Fraction(i, 25) for i in range(count)]


def test_rotated_targets_go_to_the_cpu_because_mux_streams_drop_the_display_matrix(tmp_path: Path) -> None:
    target = VideoTarget("h264", 64, 48, Fraction(25), Fraction(1, 25), "standard", rotation=90)
    with av.open(str(tmp_path / "x.mp4"), "w") as output, pytest.raises(GpuBackendError) as info:
        NvencBackend("h264").open_encoder(output, target)
    assert info.value.reason == "rotated source: PyAV cannot tag NVENC output with its rotation"


@pytest.mark.parametrize("fmt", ["nv12", "p010le"])
def test_packed_planes_round_trip_through_pyav_frames(fmt: str) -> None:
    width, height = 70, 36  # rows that PyAV pads
    bytes_per_sample = 2 if fmt == "p010le" else 1
    raw = np.random.default_rng(1).integers(
        0, 256, width * height * 3 // 2 * bytes_per_sample, dtype=np.uint8
    )
    frame = planes_to_frame(raw, width, height, fmt)
    assert (frame.width, frame.height, frame.format.name) == (width, height, fmt)
    assert np.array_equal(frame_to_planes(frame), raw)


def test_host_path_scales_nv12_to_the_target_size() -> None:
    picture = av.VideoFrame.from_ndarray(pattern(5, 320, 180), format="rgb24").reformat(format="nv12")
    packed = frame_to_planes(picture)
    scaled = planes_to_frame(packed, 320, 180, "nv12").reformat(160, 90, "p010le", interpolation="AREA")
    assert frame_to_planes(scaled).size == 160 * 90 * 3 // 2 * 2
    assert read_frame_index(scaled) == 5
