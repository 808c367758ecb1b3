"""The CPU backend: PyAV's software decoders and the encoders named in the contract's quality table."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av.error
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter
from av.video.stream import VideoStream

from gpu_worker.contract import encoder_preset
from gpu_worker.encoders.base import COLOR_FIELDS, DecodedFrame, Device, VideoTarget
from gpu_worker.engine.source import BadPacketBudget, MediaError, demux_from


class CpuDecoder:
    """Frame-threaded software decode of one video stream, by presentation time."""

    def __init__(self, source: InputContainer, stream: VideoStream) -> None:
        self._source = source
        self._stream = stream
        stream.thread_type = "AUTO"
        self._time_base = stream.time_base or Fraction(1, 90000)

    def frames(self, start: Fraction, end: Fraction | None) -> Iterator[DecodedFrame]:
        for frame in self._decode(start):
            if end is not None and frame.time >= end:
                return
            yield frame

    def _decode(self, start: Fraction) -> Iterator[DecodedFrame]:
        bad = BadPacketBudget("video")
        try:
            for packet in demux_from(self._source, self._stream, start):
                try:
                    frames = self._stream.decode(packet)
                except av.error.InvalidDataError as exc:
                    bad.spend(exc)
                    continue
                yield from self._stamped(frames)
            yield from self._stamped(self._stream.decode(None))  # drain the frames still in the decoder
        except av.error.FFmpegError as exc:
            raise MediaError("the video stream is truncated or corrupt") from exc

    def _stamped(self, frames: list[VideoFrame]) -> Iterator[DecodedFrame]:
        for frame in frames:
            if frame.pts is not None:
                yield DecodedFrame(Fraction(frame.pts) * self._time_base, frame)

    def close(self) -> None:
        """Nothing to free: the container belongs to the pipeline."""


class CpuEncoder:
    """Scales with one VideoReformatter and encodes with the table's software encoder."""

    device: Device = "cpu"

    def __init__(self, output: OutputContainer, target: VideoTarget) -> None:
        preset = encoder_preset(target.codec, "cpu", target.quality)
        self.name = preset.encoder
        self._output = output
        self._target = target
        self._pix_fmt = (preset.pix_fmt_10bit if target.ten_bit else None) or preset.pix_fmt
        stream = output.add_stream(preset.encoder, rate=target.frame_rate, options=dict(preset.options))
        stream.width, stream.height, stream.pix_fmt = target.width, target.height, self._pix_fmt
        stream.time_base = target.time_base
        ctx = stream.codec_context
        ctx.time_base = target.time_base
        if target.codec == "hevc" and output.format.name in ("mp4", "mov"):
            # FFmpeg tags HEVC in MP4 'hev1' (parameter sets in-band), which Apple players refuse;
            # 'hvc1' (parameter sets in the sample description) plays everywhere. libx265 has no
            # "tag" option: the tag is the codec context's.
            ctx.codec_tag = "hvc1"
        for name in COLOR_FIELDS:  # the source's range and colour tags, when it declares them
            value = getattr(target, name)
            if value is not None:
                setattr(ctx, name, value)
        stream.thread_type = "AUTO"
        if target.rotation:
            stream.set_display_rotation(target.rotation)
        self._stream = stream
        self._scaler = VideoReformatter()

    def encode(self, frame: DecodedFrame, pts: int) -> None:
        src_range, dst_range = _color_ranges(frame.payload, self._target.color_range)
        picture = self._scaler.reformat(
            frame.payload,
            width=self._target.width,
            height=self._target.height,
            format=self._pix_fmt,
            interpolation=Interpolation.BICUBIC,
            src_color_range=src_range,
            dst_color_range=dst_range,
        )
        picture.pts, picture.time_base = pts, self._target.time_base
        # A decoded frame keeps its I/P/B type; encoders would take it as a forced type.
        picture.pict_type = PictureType.NONE
        self._output.mux(self._stream.encode(picture))

    def flush(self) -> None:
        self._output.mux(self._stream.encode(None))

    def close(self) -> None:
        """Nothing to free: the stream and its codec context close with the output container."""


def _color_ranges(picture: VideoFrame, wanted: int | None) -> tuple[int | None, int | None]:
    """(source, output) colour range for the scaler: the output keeps the source's declared range
    (full-range stays full); an undeclared one is left to swscale's defaults, as before."""
    if not wanted:
        return None, None
    full = picture.format.name.startswith("yuvj")
    source = picture.color_range or (ColorRange.JPEG if full else ColorRange.MPEG)
    return int(source), wanted


class CpuBackend:
    """Software decode and encode through PyAV; always available."""

    device: Device = "cpu"
    name = "cpu"

    def open_decoder(self, source: InputContainer, stream: VideoStream) -> CpuDecoder:
        return CpuDecoder(source, stream)

    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> CpuEncoder:
        return CpuEncoder(output, target)
