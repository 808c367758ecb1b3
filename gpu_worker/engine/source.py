"""Hardened input: open only local media files the service wrote, within limits, and describe them.

Every source goes through `open_source`: a `file`-only protocol whitelist and a demuxer whitelist
stop playlists (HLS, concat, image sequences) from pulling in other files or URLs, an interrupt
timeout stops a stalled read, and limits reject absurd dimensions, durations and stream counts.
Any FFmpeg failure becomes `MediaError` with a short message a user can read.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.error
import msgspec
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

ALLOWED_DEMUXERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts"})
_FORMAT_WHITELIST = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts"

MAX_DIMENSION = 8192
MAX_STREAMS = 16
MAX_DURATION = Fraction(6 * 3600)
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
PROBE_MAX_PACKETS = 2000
# Demuxing packets (no decoding) to find the end of a file without a duration: 6 h of 60 fps video
# with 50 audio packets a second is about 2.4 M packets.
MAX_SCAN_PACKETS = 3_000_000
MAX_BAD_PACKETS = 50
# Seek back this far more (doubling) each time a seek lands after the wanted start (inexact
# demuxers: Matroska cues, MPEG-TS byte seeks).
SEEK_BACKOFF_S = Fraction(2)


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
    # Declared colour properties as FFmpeg enum values; None where the file leaves them unspecified.
    color_range: int | None = None
    colorspace: int | None = None
    color_primaries: int | None = None
    color_trc: int | None = None

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
    """Duration in seconds (the timeline's source duration): from the container header, else, for
    files without one (a browser's MediaRecorder WebM has no Duration element), from the end of
    the last packet found by demuxing the whole file (`scanned_end`)."""
    if container.duration:
        return Fraction(container.duration, av.time_base)
    end = scanned_end(container.name)
    return max(Fraction(0), end - container_start(container)) if end is not None else Fraction(0)


def scanned_end(path: str | os.PathLike[str]) -> Fraction | None:
    """The latest packet end time (pts + duration, seconds) of the file; demux only, no decoding,
    at most MAX_SCAN_PACKETS packets (None beyond that, or when no packet has a timestamp)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _scanned_end(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _scanned_end(path: str, size: int, mtime_ns: int) -> Fraction | None:
    # Keyed on size and mtime too: a render opens the same source several times, scan it once.
    end: Fraction | None = None
    try:
        with av.open(
            path,
            options={"protocol_whitelist": "file", "format_whitelist": _FORMAT_WHITELIST},
            timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S),
        ) as container:
            for count, packet in enumerate(container.demux()):
                if count >= MAX_SCAN_PACKETS:
                    return None
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None or packet.time_base is None:
                    continue
                last = (stamp + (packet.duration or 0)) * packet.time_base
                end = last if end is None else max(end, last)
    except av.error.FFmpegError:
        pass  # a truncated tail: what was read still counts
    return end


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
            **_colors(ctx),
        )


# FFmpeg's "unspecified" per property: AVCOL_RANGE_UNSPECIFIED, AVCOL_SPC/PRI/TRC_UNSPECIFIED.
_UNSPECIFIED = {"color_range": 0, "colorspace": 2, "color_primaries": 2, "color_trc": 2}


def _colors(ctx: VideoCodecContext) -> dict[str, int | None]:
    """The declared colour range and tags; a 'yuvj' pixel format is full range even untagged."""
    colors: dict[str, int | None] = {}
    for name, unspecified in _UNSPECIFIED.items():
        value = int(getattr(ctx, name) or 0)
        colors[name] = value if value != unspecified else None
    if colors["color_range"] is None and ctx.format is not None and ctx.format.name.startswith("yuvj"):
        colors["color_range"] = 2  # AVCOL_RANGE_JPEG
    return colors


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


def demux_from(source: InputContainer, stream: Stream, start: Fraction) -> Iterator[Packet]:
    """The stream's packets from its last keyframe at or before `start` (absolute seconds).

    The one seek both render backends use: the first packet is a keyframe (a hardware decoder
    fed from a non-keyframe fails or shows garbage), empty packets are left out (decoders are
    flushed by their caller). Demuxers whose seek is inexact (Matroska, MPEG-TS) may land after
    `start` or on a non-keyframe: the seek then goes back further until the keyframe is early
    enough. A start at or before the first frame seeks to timestamp 0 (MPEG-TS would otherwise land
    past its first keyframe). Seek and demux failures raise MediaError.
    """
    time_base = stream.time_base or Fraction(1, 90000)
    first = Fraction(stream.start_time or 0) * time_base
    back = Fraction(0)
    try:
        while True:
            target = start - back
            _seek(source, stream, target, first, time_base)
            packets = (packet for packet in source.demux(stream) if packet.size > 0)
            head = next((packet for packet in packets if packet.is_keyframe), None)
            if head is None and target <= first:
                # No packet flagged as a keyframe at all: hand over everything, decoders cope.
                _seek(source, stream, target, first, time_base)
                packets = (packet for packet in source.demux(stream) if packet.size > 0)
                head = next(packets, None)
                if head is None:
                    return
                break
            if head is not None:
                stamp = head.pts if head.pts is not None else head.dts
                if stamp is None or stamp * time_base <= start or target <= first:
                    break
            back = back * 2 if back else SEEK_BACKOFF_S
        yield head
        yield from packets
    except av.error.FFmpegError as exc:
        raise MediaError("the video stream is truncated or corrupt") from exc


def _seek(
    source: InputContainer, stream: Stream, time: Fraction, first: Fraction, time_base: Fraction
) -> None:
    offset = math.floor(time / time_base) if time > first else min(0, math.floor(first / time_base))
    try:
        source.seek(offset, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as exc:
        raise MediaError("the video cannot be seeked (corrupt index?)") from exc
