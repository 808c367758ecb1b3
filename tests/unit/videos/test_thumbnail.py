"""The list thumbnail: the frame at 10 % of the duration, upright, 320 px wide at the display aspect
ratio, as a JPEG; read back by decoding it (the test clips burn each frame's index into its pixels)."""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from backend.domain.videos.thumbnail import grab_thumbnail
from gpu_worker.engine.source import MediaError, probe
from tests.media import GRID, make_video, pattern, read_frame_index


def decode_jpeg(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        assert container.format.name == "jpeg_pipe"
        return next(container.decode(video=0))


def thumbnail_of(path: Path) -> av.VideoFrame:
    return decode_jpeg(grab_thumbnail(path, probe(path)))


def cells(frame: av.VideoFrame) -> np.ndarray:
    """The GRID x GRID cells of a picture as booleans (white), sampled at their centres."""
    luma = frame.to_ndarray(format="gray")
    height, width = luma.shape
    rows = [(2 * r + 1) * height // (2 * GRID) for r in range(GRID)]
    cols = [(2 * c + 1) * width // (2 * GRID) for c in range(GRID)]
    return luma[np.ix_(rows, cols)] > 128


def test_the_thumbnail_is_the_frame_at_a_tenth_of_the_duration(tmp_path: Path) -> None:
    made = make_video(tmp_path / "clip.mp4", seconds=4, fps=25, width=320, height=180, gop=25)
    frame = thumbnail_of(made.path)
    assert (frame.width, frame.height) == (320, 180)
    assert read_frame_index(frame) == 10  # 0.4 s at 25 fps, decoded forward from the keyframe at 0


def test_a_larger_video_is_scaled_to_320_px_keeping_its_aspect_ratio(tmp_path: Path) -> None:
    made = make_video(tmp_path / "wide.mkv", seconds=1, width=640, height=256)
    frame = thumbnail_of(made.path)
    assert (frame.width, frame.height) == (320, 128)
    assert read_frame_index(frame) == 2


def test_non_square_pixels_are_scaled_to_the_display_aspect_ratio(tmp_path: Path) -> None:
    """720x576 with a 16:15 sample aspect ratio (PAL 4:3) shows as 768x576: 320x240."""
    path = tmp_path / "pal.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 720, 576, "yuv420p"
        stream.codec_context.sample_aspect_ratio = Fraction(16, 15)
        for index in range(10):
            frame = av.VideoFrame.from_ndarray(pattern(index, 720, 576), format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode())
    frame = thumbnail_of(path)
    assert (frame.width, frame.height) == (320, 240)


@pytest.mark.parametrize(
    ("rotation", "expected"),
    [
        # Frame 5 has bits 0 and 2 set: the stored top row reads white, black, white, black.
        # Turned 90° counter-clockwise, that row becomes the left column, read bottom to top.
        (90, lambda grid: grid[::-1, 0]),
        # Turned 90° clockwise, it becomes the right column, read top to bottom.
        (-90, lambda grid: grid[:, -1]),
        # Turned 180°, it becomes the bottom row, read right to left.
        (180, lambda grid: grid[-1, ::-1]),
    ],
)
def test_the_display_rotation_is_applied_to_the_pixels(
    tmp_path: Path, rotation: int, expected: Callable[[np.ndarray], np.ndarray]
) -> None:
    made = make_video(tmp_path / "phone.mp4", seconds=2, fps=25, width=320, height=180, rotation=rotation)
    frame = thumbnail_of(made.path)
    assert frame.width == 320
    assert frame.height == (568 if rotation in (90, -90) else 180)
    assert list(expected(cells(frame))) == [True, False, True, False]


def test_an_undecodable_frame_at_the_thumbnail_time_raises_media_error(tmp_path: Path) -> None:
    path = make_video(tmp_path / "broken.mp4", seconds=10, width=160, height=96, gop=5, audio=False).path
    break_video_after(path, Fraction(1, 2))
    info = probe(path)  # the start still decodes, so the probe accepts it
    with pytest.raises(MediaError, match="cannot be decoded"):
        grab_thumbnail(path, info)


def break_video_after(path: Path, at: Fraction) -> None:
    """Make every video packet from `at` on undecodable: its first NAL unit's length becomes absurd."""
    with av.open(str(path)) as container:
        spots = [
            p.pos
            for p in container.demux(video=0)
            if p.size and p.pts is not None and p.pts * p.time_base >= at
        ]
    data = bytearray(path.read_bytes())
    for pos in spots:
        data[pos : pos + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
