"""The CPU backend: PyAV's software decoders and the encoders named in the contract's quality table."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from fractions import Fraction

import av.error
from av.container import InputContainer, OutputContainer
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter
from av.video.stream import VideoStream

from gpu_worker.contract import encoder_preset
from gpu_worker.encoders.base import DecodedFrame, Device, VideoTarget
from gpu_worker.engine.source import BadPacketBudget, MediaError

# Seek back this far more each time a seek lands after the wanted start (inexact demuxers).
_SEEK_BACKOFF_S = Fraction(2)


class CpuDecoder:
    """Frame-threaded software decode of one video stream, by presentation time."""

    def __init__(self, source: InputContainer, stream: VideoStream) -> None:
        self._source = source
        self._stream = stream
        stream.thread_type = "AUTO"
        self._time_base = stream.time_base or Fraction(1, 90000)
        self._first = Fraction(stream.start_time or 0) * self._time_base

    def frames(self, start: Fraction, end: Fraction | None) -> Iterator[DecodedFrame]:
        back = Fraction(0)
        while True:
            target = start - back
            self._seek(target)
            frames = self._decode()
            first = next(frames, None)
            if first is None:
                return
            if first.time <= start or target <= self._first:
                break
            back += _SEEK_BACKOFF_S
        for frame in itertools.chain([first], frames):
            if end is not None and frame.time >= end:
                return
            yield frame

    def _seek(self, time: Fraction) -> None:
        # Before the first frame, seek to timestamp 0: MPEG-TS lands past the first keyframe otherwise.
        offset = (
            int(time / self._time_base) if time > self._first else min(0, int(self._first / self._time_base))
        )
        try:
            self._source.seek(offset, stream=self._stream, backward=True)
        except av.error.FFmpegError as exc:
            raise MediaError("the video cannot be seeked (corrupt index?)") from exc

    def _decode(self) -> Iterator[DecodedFrame]:
        bad = BadPacketBudget("video")
        try:
            for packet in self._source.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as exc:
                    bad.spend(exc)
                    continue
                for frame in frames:
                    if frame.pts is not None:
                        yield DecodedFrame(Fraction(frame.pts) * self._time_base, frame)
        except av.error.FFmpegError as exc:
            raise MediaError("the video stream is truncated or corrupt") from exc

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
        stream.codec_context.time_base = target.time_base
        stream.thread_type = "AUTO"
        if target.rotation:
            stream.set_display_rotation(target.rotation)
        self._stream = stream
        self._scaler = VideoReformatter()

    def encode(self, frame: DecodedFrame, pts: int) -> None:
        picture = self._scaler.reformat(
            frame.payload,
            width=self._target.width,
            height=self._target.height,
            format=self._pix_fmt,
            interpolation=Interpolation.BICUBIC,
        )
        picture.pts, picture.time_base = pts, self._target.time_base
        # A decoded frame keeps its I/P/B type; encoders would take it as a forced type.
        picture.pict_type = PictureType.NONE
        self._output.mux(self._stream.encode(picture))

    def flush(self) -> None:
        self._output.mux(self._stream.encode(None))

    def close(self) -> None:
        """Nothing to free: the stream and its codec context close with the output container."""


class CpuBackend:
    """Software decode and encode through PyAV; always available."""

    device: Device = "cpu"
    name = "cpu"

    def open_decoder(self, source: InputContainer, stream: VideoStream) -> CpuDecoder:
        return CpuDecoder(source, stream)

    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> CpuEncoder:
        return CpuEncoder(output, target)
