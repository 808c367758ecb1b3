"""Encode frame spans, concatenated, into one media file: the loop shared by single and clips mode.

Segment k starts at the summed durations of the spans before it and its frames keep their source
spacing (VFR survives); audio is pumped up to each video frame's time so the mux stays interleaved.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gpu_worker.contract import Format, RenderRequest, audio_spec, fit_size
from gpu_worker.encoders.base import Backend, VideoTarget
from gpu_worker.engine.audio import AudioTrack
from gpu_worker.engine.errors import RenderCancelled
from gpu_worker.engine.progress import ProgressMeter
from gpu_worker.engine.source import MediaError, MediaInfo, open_source
from gpu_worker.engine.timeline import Span, with_offsets

_CONTAINER_OPTIONS: dict[Format, dict[str, str]] = {
    Format.MP4: {"movflags": "+faststart"},
    Format.MOV: {"movflags": "+faststart"},
    Format.WEBM: {},
}


@dataclass(frozen=True, slots=True)
class FileResult:
    """One rendered media file."""

    frames: int
    duration: Fraction
    encoder_used: str


@dataclass(slots=True)
class RenderJob:
    """Everything one render needs, shared by single and clips mode."""

    request: RenderRequest
    source: Path
    info: MediaInfo
    backend: Backend
    meter: ProgressMeter
    cancel: threading.Event

    @property
    def size(self) -> tuple[int, int]:
        return fit_size(self.info.width, self.info.height, self.request.resolution, self.info.rotation)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise RenderCancelled


@contextlib.contextmanager
def partial_file(final: Path) -> Iterator[Path]:
    """A hidden sibling path to write to; renamed to `final` on success, removed on any failure."""
    partial = final.with_name(f".{final.name}.partial")
    try:
        yield partial
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def encode_file(job: RenderJob, spans: Sequence[Span], path: Path) -> FileResult:
    """Encode the spans, concatenated, into one media file at `path`."""
    request, info = job.request, job.info
    width, height = job.size
    with contextlib.ExitStack() as stack:
        video_in = stack.enter_context(open_source(job.source))
        stream = video_in.streams.video[0]
        out = stack.enter_context(
            av.open(str(path), "w", format=str(request.format), options=_CONTAINER_OPTIONS[request.format])
        )
        target = VideoTarget(
            codec=str(request.video_codec),
            width=width,
            height=height,
            frame_rate=Fraction(info.frame_rate),
            time_base=stream.time_base or Fraction(1, 90000),
            quality=str(request.quality),
            ten_bit=info.bit_depth > 8,
            rotation=info.rotation,
            color_range=info.color_range,
            colorspace=info.colorspace,
            color_primaries=info.color_primaries,
            color_trc=info.color_trc,
        )
        decoder = job.backend.open_decoder(video_in, stream)
        stack.callback(decoder.close)
        encoder = job.backend.open_encoder(out, target)
        stack.callback(encoder.close)
        audio = None
        if info.has_audio:
            audio_in = stack.enter_context(open_source(job.source))
            audio = AudioTrack(out, audio_in, audio_spec(request.format, request.video_codec))
        frames, duration, last_pts = 0, Fraction(0), -1
        for span, offset in with_offsets(spans):
            if audio is not None:
                audio.start_span(span.start, span.end, offset)
            # closing(): on a failure the generator (an NVDEC session for the GPU backend) ends now,
            # not when the traceback holding this frame is dropped (after a CPU re-render).
            with contextlib.closing(decoder.frames(span.start, span.end)) as decoded:
                for frame in decoded:
                    job.check_cancel()  # every frame: a slow encoder must still stop within a second or two
                    if frame.time < span.start:
                        continue
                    output_time = frame.time - span.start + offset
                    pts = int(output_time / target.time_base)
                    if pts <= last_pts:
                        raise MediaError("the video's timestamps are out of order (AVI with B-frames?)")
                    encoder.encode(frame, pts)
                    last_pts = pts
                    frames += 1
                    job.meter.advance()
                    if audio is not None:
                        audio.pump(output_time)
            duration = offset + span.duration
        encoder.flush()
        if audio is not None:
            audio.flush()
        return FileResult(frames, duration, encoder.name)
