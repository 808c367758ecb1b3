"""Which source frames each segment holds, decided before decoding from the packet timestamps.

A demux-only pass (no decode) over the video stream collects every frame's presentation time.
That gives, per segment, the exact frame count (the progress total), the time of its first frame
and the time its last frame ends (the next frame's time). Audio is cut to that same frame span,
so audio and video stay the same length at every join, and VFR timing is kept as it is.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av.error
import numpy as np
from av.container import InputContainer

from gpu_worker.contract import ContractError, Segment
from gpu_worker.engine.errors import RenderCancelled
from gpu_worker.engine.source import MediaError, container_start

_CANCEL_EVERY = 512


@dataclass(frozen=True, slots=True)
class Span:
    """One segment resolved to frames: absolute stream times [start, end) and its frame count."""

    segment: Segment
    start: Fraction
    end: Fraction
    frames: int

    @property
    def duration(self) -> Fraction:
        return self.end - self.start


def plan_spans(
    container: InputContainer, segments: Sequence[Segment], cancel: threading.Event | None = None
) -> list[Span]:
    """Resolve segments (source seconds from the file's start) to frame spans of the first video stream."""
    stream = container.streams.video[0]
    time_base = stream.time_base or Fraction(1, 90000)
    pts, last_duration = _scan(container, cancel)
    if not len(pts):
        raise MediaError("the video stream has no frames")
    if not last_duration:
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        last_duration = max(1, round(1 / (rate * time_base)))
    stream_end = int(pts[-1]) + last_duration
    origin = container_start(container)
    spans = []
    for i, segment in enumerate(segments):
        lo = math.ceil((origin + segment.start) / time_base)
        hi = math.ceil((origin + segment.end) / time_base)
        first, stop = np.searchsorted(pts, [lo, hi], side="left")
        if stop == first:
            raise ContractError(f"segments[{i}]", "contains no video frame")
        end = int(pts[stop]) if stop < len(pts) else stream_end
        spans.append(Span(segment, int(pts[first]) * time_base, end * time_base, int(stop - first)))
    return spans


def _scan(container: InputContainer, cancel: threading.Event | None) -> tuple[np.ndarray, int]:
    """Sorted presentation timestamps of all shown video frames, and the duration of the last one."""
    stream = container.streams.video[0]
    times = array("q")
    last_pts, last_duration = None, 0
    try:
        for count, packet in enumerate(container.demux(stream)):
            if cancel is not None and count % _CANCEL_EVERY == 0 and cancel.is_set():
                raise RenderCancelled
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None or packet.size == 0 or packet.is_discard:
                continue
            times.append(pts)
            if last_pts is None or pts > last_pts:
                last_pts, last_duration = pts, packet.duration or 0
    except av.error.FFmpegError as exc:
        raise MediaError("the video stream is corrupt and cannot be read") from exc
    return np.sort(np.frombuffer(times, dtype=np.int64)), last_duration


def with_offsets(spans: Sequence[Span]) -> list[tuple[Span, Fraction]]:
    """Each span with the output time it starts at: the summed durations of the spans before it."""
    placed, offset = [], Fraction(0)
    for span in spans:
        placed.append((span, offset))
        offset += span.duration
    return placed
