"""The one interface both render backends (CPU via PyAV, GPU via PyNvVideoCodec) implement.

The pipeline owns demux, the cut (which frames fall in a segment, by presentation time), audio and
mux; a backend owns decode, scale/convert and encode, so a GPU backend can keep frames in GPU memory
from NVDEC to NVENC. The pipeline never looks inside a frame payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

from gpu_worker.contract import Device

if TYPE_CHECKING:
    from av.container import InputContainer, OutputContainer
    from av.video.stream import VideoStream


# VideoTarget's colour fields, named as the codec context's attributes they are written to.
COLOR_FIELDS = ("color_range", "colorspace", "color_primaries", "color_trc")


@dataclass(frozen=True, slots=True)
class VideoTarget:
    """What the encoder must produce: codec family from the contract, size, rate and quality.

    `width`/`height` are the coded size (contract.fit_size). `time_base` is the unit of the `pts`
    passed to `encode` (the source stream's, so VFR timing survives); `frame_rate` is nominal.
    `rotation` (counter-clockwise degrees, as `VideoFrame.rotation` reads it) is written as the
    output stream's display matrix (`VideoStream.set_display_rotation`): pixels are never turned.
    `ten_bit` asks for a 10-bit output when the codec's preset has one (contract.EncoderPreset).
    `color_range`, `colorspace`, `color_primaries` and `color_trc` are the source's (FFmpeg enum
    values, as `MediaInfo` has them; None: not declared): the output keeps the range and the tags.
    """

    codec: str
    width: int
    height: int
    frame_rate: Fraction
    time_base: Fraction
    quality: str
    ten_bit: bool = False
    rotation: int = 0
    color_range: int | None = None
    colorspace: int | None = None
    color_primaries: int | None = None
    color_trc: int | None = None


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded picture: its presentation time in seconds and an opaque, backend-owned payload."""

    time: Fraction
    payload: Any


class FrameDecoder(Protocol):
    """Decodes the source's video stream; seeks to the keyframe before `start`, yields in order.

    `start`/`end` are absolute stream times in seconds. Frames before `start` may be yielded (the
    pipeline cuts by `time`); iteration should stop at the first frame at or after `end` (None:
    run to the end of the stream). Decoding failures raise `engine.source.MediaError`.
    """

    def frames(self, start: Fraction, end: Fraction | None) -> Iterator[DecodedFrame]: ...

    def close(self) -> None: ...


class VideoEncoder(Protocol):
    """Scales/converts a payload to the target, encodes it and muxes the packets into the output.

    `pts` is in `VideoTarget.time_base`, starts at 0 and increases; `flush` drains the encoder
    once at the end, `close` frees resources (also after a failure or a cancel).
    """

    name: str
    device: Device

    def encode(self, frame: DecodedFrame, pts: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """A matched decoder/encoder pair; `name` is what the export records, e.g. 'h264_nvenc@GPU0'."""

    device: Device

    def open_decoder(self, source: InputContainer, stream: VideoStream) -> FrameDecoder: ...

    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> VideoEncoder: ...
