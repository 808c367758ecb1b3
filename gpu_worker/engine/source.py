"""Hardened input: open only local media files the service wrote, within limits, and describe them.

Every source goes through `open_source`: a `file`-only protocol whitelist and a demuxer whitelist
stop playlists (HLS, concat, image sequences) from pulling in other files or URLs, an interrupt
timeout stops a stalled read, and limits reject absurd dimensions, durations and stream counts.
Any FFmpeg failure becomes `MediaError` with a short message a user can read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error
import msgspec
from av.container import InputContainer

ALLOWED_DEMUXERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts"})
_FORMAT_WHITELIST = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts"

MAX_DIMENSION = 8192
MAX_STREAMS = 16
MAX_DURATION = Fraction(6 * 3600)
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
PROBE_MAX_PACKETS = 2000
MAX_BAD_PACKETS = 50


class MediaError(Exception):
    """The input is corrupt, truncated, unsupported or outside the limits (message is user-facing)."""


class BadPacketBudget:
    """Tolerates a few undecodable packets (a glitch becomes a dropped frame or silence), not many."""

    def __init__(self, what: str, limit: int = MAX_BAD_PACKETS) -> None:
        self._what = what
        self._left = limit

    def spend(self, exc: av.error.FFmpegError) -> None:
        self._left -= 1
        if self._left < 0:
            raise MediaError(f"the {self._what} stream is corrupt and cannot be decoded") from exc


class MediaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine and the API need to know about a source video."""

    container: str
    duration: Fraction
    start_time: Fraction
    width: int
    height: int
    rotation: int
    frame_rate: str
    video_codec: str
    pix_fmt: str
    bit_depth: int
    frame_count: int | None
    audio_codec: str | None = None
    audio_channels: int | None = None
    audio_layout: str | None = None
    audio_rate: int | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


@contextlib.contextmanager
def open_source(path: str | os.PathLike[str]) -> Iterator[InputContainer]:
    """Open a local media file for demuxing, checked against the allow-list and the limits."""
    path = Path(path)
    if not path.is_file():
        raise MediaError("the source file is missing")
    try:
        container = av.open(
            str(path),
            mode="r",
            format=None,
            options={"protocol_whitelist": "file", "format_whitelist": _FORMAT_WHITELIST},
            timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S),
        )
    except av.error.FFmpegError as exc:
        raise MediaError("the file is not a readable video (corrupt, truncated or unsupported)") from exc
    with container:
        _check_limits(container)
        yield container


def _check_limits(container: InputContainer) -> None:
    if container.format.name not in ALLOWED_DEMUXERS:
        raise MediaError(f"unsupported container format ({container.format.name})")
    if len(container.streams) > MAX_STREAMS:
        raise MediaError(f"too many streams ({len(container.streams)}, at most {MAX_STREAMS})")
    if not container.streams.video:
        raise MediaError("the file has no video stream")
    video = container.streams.video[0]
    ctx = video.codec_context
    if not ctx.width or not ctx.height or ctx.format is None:
        raise MediaError("the video stream cannot be decoded (unknown size or pixel format)")
    if ctx.width > MAX_DIMENSION or ctx.height > MAX_DIMENSION:
        raise MediaError(f"the video is too large ({ctx.width}x{ctx.height}, at most {MAX_DIMENSION})")
    duration = container_duration(container)
    if duration <= 0:
        raise MediaError("the video has no duration")
    if duration > MAX_DURATION:
        raise MediaError("the video is longer than 6 hours")


def container_duration(container: InputContainer) -> Fraction:
    """Duration in seconds from the container header (the timeline's source duration)."""
    return Fraction(container.duration or 0, av.time_base)


def container_start(container: InputContainer) -> Fraction:
    """Timestamp of the file's time zero: segment times are relative to it."""
    return Fraction(container.start_time or 0, av.time_base)


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe a source; decodes only its first video frame (for the display rotation)."""
    with open_source(path) as container:
        video = container.streams.video[0]
        ctx = video.codec_context
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        audio = container.streams.audio[0] if container.streams.audio else None
        return MediaInfo(
            container=container.format.name,
            duration=container_duration(container),
            start_time=container_start(container),
            width=ctx.width,
            height=ctx.height,
            rotation=_first_frame_rotation(container),
            frame_rate=f"{rate.numerator}/{rate.denominator}",
            video_codec=ctx.name,
            pix_fmt=ctx.format.name,
            bit_depth=max(c.bits for c in ctx.format.components),
            frame_count=video.frames or None,
            audio_codec=audio.codec_context.name if audio else None,
            audio_channels=audio.codec_context.channels if audio else None,
            audio_layout=audio.codec_context.layout.name if audio else None,
            audio_rate=audio.codec_context.sample_rate if audio else None,
        )


def _first_frame_rotation(container: InputContainer) -> int:
    """Counter-clockwise display rotation; PyAV exposes the display matrix only on decoded frames."""
    video = container.streams.video[0]
    try:
        for count, packet in enumerate(container.demux(video)):
            if count > PROBE_MAX_PACKETS:
                break
            for frame in packet.decode():
                return int(frame.rotation)
    except av.error.FFmpegError as exc:
        raise MediaError("the video stream cannot be decoded") from exc
    raise MediaError("the video stream has no decodable frame")
