"""The output's audio: the source cut to the video's frame spans, sample-accurate, faded at joins.

Each span gets exactly the number of samples its video lasts (output sample positions are the
rounded output times, so rounding never accumulates); gaps in the source are filled with silence
and overlaps dropped, which keeps A/V in sync across any number of joins. Samples are re-chunked
to the encoder's frame size and timestamped from a running sample counter.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer

from gpu_worker.contract import AudioSpec
from gpu_worker.engine.source import BadPacketBudget, MediaError

FADE_S = Fraction(5, 1000)
# Start decoding this much before a cut: codecs like AAC need the previous frame to overlap with.
_PREROLL_S = Fraction(1, 5)
_DEFAULT_FRAME_SIZE = 1024


class AudioTrack:
    """Writes one output audio stream from a dedicated input container (its own demux position)."""

    def __init__(self, output: OutputContainer, source: InputContainer, spec: AudioSpec) -> None:
        self._source = source
        self._input: AudioStream = source.streams.audio[0]
        in_ctx = self._input.codec_context
        self.rate = spec.fixed_rate or in_ctx.sample_rate
        self.layout = "mono" if in_ctx.channels == 1 else "stereo"
        self._channels = 1 if self.layout == "mono" else 2
        stream = output.add_stream(spec.encoder, rate=self.rate, layout=self.layout)
        stream.format = spec.sample_format
        if spec.bit_rate:
            stream.bit_rate = spec.bit_rate
        stream.codec_context.open()
        self._stream = stream
        self._output = output
        self._frame_size = stream.codec_context.frame_size or _DEFAULT_FRAME_SIZE
        self._sample_format = spec.sample_format
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._emitted = 0
        self._span: Iterator[np.ndarray] | None = None
        self._span_end = 0

    @property
    def samples_written(self) -> int:
        return self._emitted + self._pending_len

    def start_span(self, start: Fraction, end: Fraction, offset: Fraction) -> None:
        """Begin the source span [start, end) (absolute seconds) placed at output time `offset`."""
        self.finish_span()
        first = round(offset * self.rate)
        self._span_end = round((offset + end - start) * self.rate)
        self._span = self._span_samples(start, self._span_end - first)

    def pump(self, until: Fraction) -> None:
        """Produce the current span's samples up to output time `until` (keeps A/V interleaved)."""
        target = min(round(until * self.rate), self._span_end)
        while self._span is not None and self.samples_written < target:
            chunk = next(self._span, None)
            if chunk is None:
                self._span = None
                break
            self._push(chunk)

    def finish_span(self) -> None:
        if self._span is not None:
            for chunk in self._span:
                self._push(chunk)
            self._span = None

    def flush(self) -> None:
        """Encode what is left (a short last frame) and drain the encoder."""
        self.finish_span()
        if self._pending_len:
            self._encode(np.concatenate(self._pending, axis=1))
            self._pending, self._pending_len = [], 0
        self._output.mux(self._stream.encode(None))

    def _push(self, chunk: np.ndarray) -> None:
        self._pending.append(chunk)
        self._pending_len += chunk.shape[1]
        if self._pending_len < self._frame_size:
            return
        data = np.concatenate(self._pending, axis=1)
        whole = data.shape[1] - data.shape[1] % self._frame_size
        for at in range(0, whole, self._frame_size):
            self._encode(data[:, at : at + self._frame_size])
        rest = data[:, whole:]
        self._pending, self._pending_len = ([rest], rest.shape[1]) if rest.shape[1] else ([], 0)

    def _encode(self, planar: np.ndarray) -> None:
        frame = _to_frame(planar, self._sample_format, self.layout)
        frame.sample_rate = self.rate
        frame.pts, frame.time_base = self._emitted, Fraction(1, self.rate)
        self._emitted += planar.shape[1]
        self._output.mux(self._stream.encode(frame))

    def _span_samples(self, start: Fraction, total: int) -> Iterator[np.ndarray]:
        """Exactly `total` float32 planar samples of the source from `start`, faded at both ends."""
        fade = max(1, round(FADE_S * self.rate))
        written = 0
        for chunk, position in self._decoded(start):
            if position > written:
                gap = min(position - written, total - written)
                yield _faded(np.zeros((self._channels, gap), np.float32), written, total, fade)
                written += gap
            skip = written - position
            if skip >= chunk.shape[1]:
                continue
            piece = chunk[:, skip : skip + total - written]
            yield _faded(piece, written, total, fade)
            written += piece.shape[1]
            if written >= total:
                return
        if written < total:
            yield np.zeros((self._channels, total - written), np.float32)

    def _decoded(self, start: Fraction) -> Iterator[tuple[np.ndarray, int]]:
        """Resampled source audio as (planar float32, sample position relative to `start`)."""
        time_base = self._input.time_base or Fraction(1, self.rate)
        resampler = AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        position: int | None = None
        # One source tick in output samples: how far a rounded timestamp may be from the truth.
        tolerance = time_base * self.rate
        bad = BadPacketBudget("audio")
        try:
            self._source.seek(
                max(0, int((start - _PREROLL_S) / time_base)), stream=self._input, backward=True
            )
            for packet in self._source.demux(self._input):
                try:
                    frames = [out for frame in packet.decode() for out in resampler.resample(frame)]
                except av.error.InvalidDataError as exc:
                    bad.spend(exc)
                    continue
                for out in frames:
                    position = _position(out, start, self.rate, position, tolerance)
                    yield out.to_ndarray(), position
                    position += out.samples
            for out in resampler.resample(None):
                position = _position(out, start, self.rate, position, tolerance)
                yield out.to_ndarray(), position
                position += out.samples
        except av.error.FFmpegError as exc:
            raise MediaError("the audio stream is truncated or corrupt") from exc


def _position(
    frame: AudioFrame, start: Fraction, rate: int, running: int | None, tolerance: Fraction = Fraction(0)
) -> int:
    """A frame's first sample relative to `start`: the running position (where the previous frame
    ended) unless the frame's timestamp is more than `tolerance` samples away from it.

    Timestamps are rounded to the source's time base: with Matroska's 1 ms, each AAC frame's pts is
    up to 24 samples (at 48 kHz) off its true place, and following it would cut or pad every frame
    (clicks). Only a real gap or overlap, larger than one source tick, moves the position.
    """
    if frame.pts is None or frame.time_base is None:
        return running or 0
    stamped = round((frame.pts * frame.time_base - start) * rate)
    if running is None or abs(stamped - running) > tolerance:
        return stamped
    return running


def _faded(chunk: np.ndarray, at: int, total: int, fade: int) -> np.ndarray:
    """Apply the linear fade-in over samples [0, fade) and fade-out over [total - fade, total)."""
    if at >= fade and at + chunk.shape[1] <= total - fade:
        return chunk
    index = np.arange(at, at + chunk.shape[1], dtype=np.float32)
    gain = np.minimum(1.0, np.minimum((index + 1) / fade, (total - index) / fade)).astype(np.float32)
    return chunk * gain


def _to_frame(planar: np.ndarray, sample_format: str, layout: str) -> AudioFrame:
    data = np.ascontiguousarray(planar, dtype=np.float32)
    if sample_format == "fltp":
        return AudioFrame.from_ndarray(data, format="fltp", layout=layout)
    interleaved = data.T.reshape(1, -1)
    if sample_format == "flt":
        return AudioFrame.from_ndarray(np.ascontiguousarray(interleaved), format="flt", layout=layout)
    pcm = np.clip(interleaved * 32767.0, -32768, 32767).astype(np.int16)
    return AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
