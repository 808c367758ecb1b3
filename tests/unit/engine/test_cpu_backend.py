"""The CPU backend opens every quality-table entry and encodes/decodes by presentation time."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest

from gpu_worker.contract import QUALITY, Codec
from gpu_worker.encoders.base import DecodedFrame, VideoTarget
from gpu_worker.encoders.cpu import CpuBackend
from tests.media import MadeVideo, pattern, read_frame_index

CONTAINER = {Codec.H264: "mp4", Codec.HEVC: "mp4", Codec.AV1: "mp4", Codec.VP9: "webm", Codec.PRORES: "mov"}
# FFmpeg's ProRes decoder returns 4444 pictures as 12-bit.
DECODED_AS = {"yuv444p10le": "yuv444p12le"}
CPU_ENTRIES = sorted((codec, quality) for codec, device, quality in QUALITY if device == "cpu")


@pytest.mark.parametrize("ten_bit", [False, True], ids=["8bit", "10bit"])
@pytest.mark.parametrize(("codec", "quality"), CPU_ENTRIES, ids=[f"{c}-{q}" for c, q in CPU_ENTRIES])
def test_every_cpu_table_entry_encodes_decodable_frames(
    tmp_path: Path, codec: Codec, quality: str, ten_bit: bool
) -> None:
    preset = QUALITY[(codec, "cpu", quality)]
    path = tmp_path / f"out.{CONTAINER[codec]}"
    target = VideoTarget(str(codec), 128, 72, Fraction(25), Fraction(1, 25), quality, ten_bit=ten_bit)
    with av.open(str(path), "w") as out:
        encoder = CpuBackend().open_encoder(out, target)
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(pattern(index, 128, 72), format="rgb24")
            encoder.encode(DecodedFrame(Fraction(index, 25), frame), index)
        encoder.flush()
        encoder.close()
    assert encoder.name == preset.encoder
    with av.open(str(path)) as result:
        frames = list(result.decode(video=0))
    assert [read_frame_index(f) for f in frames] == [0, 1, 2]
    expected_fmt = (preset.pix_fmt_10bit if ten_bit else None) or preset.pix_fmt
    assert frames[0].format.name == DECODED_AS.get(expected_fmt, expected_fmt)


def test_decoder_yields_frames_from_a_mid_gop_start_to_before_end(cfr25: MadeVideo) -> None:
    with av.open(str(cfr25.path)) as source:
        decoder = CpuBackend().open_decoder(source, source.streams.video[0])
        frames = [f for f in decoder.frames(Fraction(13, 25), Fraction(30, 25)) if f.time >= Fraction(13, 25)]
        again = [
            f.time for f in decoder.frames(Fraction(2, 25), Fraction(4, 25)) if f.time >= Fraction(2, 25)
        ]
        decoder.close()
    assert [read_frame_index(f.payload) for f in frames] == list(range(13, 30))
    assert [f.time for f in frames] == [Fraction(i, 25) for i in range(13, 30)]
    assert again == [Fraction(2, 25), Fraction(3, 25)]
