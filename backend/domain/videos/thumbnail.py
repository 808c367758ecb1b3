"""A list thumbnail: one frame about 10 % into the video, upright, 320 px wide, as a JPEG.

Synchronous and CPU-bound (decode, scale, encode): callers run it in a thread. It reads the
source through the engine's hardened `open_source`/`demux_from`, so it accepts exactly what the
probe accepted and seeks the way the render does (keyframe before, then decode forward).
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import av.error
import numpy as np

from gpu_worker.engine.source import MediaError, MediaInfo, demux_from, open_source

THUMBNAIL_WIDTH = 320
AT_FRACTION = Fraction(1, 10)
MAX_HEIGHT_RATIO = 4
"""Height cap, as a multiple of the width: a bogus sample aspect ratio must not make a huge picture."""
JPEG_QSCALE = 4
"""MJPEG quantiser scale (2 best … 31 worst): 4 keeps a 320 px frame sharp at roughly 10-20 kB."""


def grab_thumbnail(path: str | os.PathLike[str], info: MediaInfo, width: int = THUMBNAIL_WIDTH) -> bytes:
    """The JPEG bytes of the frame shown at 10 % of the duration, turned by the display rotation
    and scaled to `width` with the display aspect ratio (sample aspect ratio included)."""
    with open_source(path) as container:
        stream = container.streams.video[0]
        frame = _frame_at(container, stream, info.start_time + info.duration * AT_FRACTION)
        sar = stream.codec_context.sample_aspect_ratio or Fraction(1)
        turns = (info.rotation // 90) % 4
        shown_w, shown_h = Fraction(frame.width) * sar, Fraction(frame.height)
        if turns % 2:
            shown_w, shown_h = shown_h, shown_w
        height = min(max(2, round(width * shown_h / shown_w / 2) * 2), width * MAX_HEIGHT_RATIO)
        # Scale in the stored orientation, then turn the pixels: numpy's rot90 turns counter-clockwise,
        # the direction of PyAV's `rotation`.
        scaled = (height, width) if turns % 2 else (width, height)
        rgb = frame.reformat(width=scaled[0], height=scaled[1], format="rgb24").to_ndarray()
        upright = np.ascontiguousarray(np.rot90(rgb, turns))
        return _jpeg(av.VideoFrame.from_ndarray(upright, format="rgb24"))


def _frame_at(container: av.container.InputContainer, stream: av.VideoStream, at: Fraction) -> av.VideoFrame:
    """The frame on screen at `at` seconds: the last one starting at or before it (the first one if
    the stream starts later, the last one if it ends earlier)."""
    shown: av.VideoFrame | None = None
    try:
        for packet in demux_from(container, stream, at):
            for frame in packet.decode():
                if shown is not None and _starts_after(frame, at):
                    return shown
                shown = frame
        for frame in stream.codec_context.decode(None):
            if shown is not None and _starts_after(frame, at):
                return shown
            shown = frame
    except av.error.FFmpegError as exc:
        raise MediaError("the video stream cannot be decoded") from exc
    if shown is None:
        raise MediaError("the video stream has no decodable frame")
    return shown


def _starts_after(frame: av.VideoFrame, at: Fraction) -> bool:
    """Exact, in rationals: `frame.time` is a float, and 0.2 as a float is already after 1/5."""
    return frame.pts is not None and Fraction(frame.pts) * frame.time_base > at


def _jpeg(frame: av.VideoFrame) -> bytes:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = JPEG_QSCALE
    packets = [*encoder.encode(frame.reformat(format="yuvj420p")), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets)
