"""encode_file's resource handling: a failing render frees the decoder before the error propagates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from av.container import InputContainer, OutputContainer
from av.video.stream import VideoStream

from gpu_worker.contract import RenderRequest
from gpu_worker.encoders.base import DecodedFrame, VideoTarget
from gpu_worker.encoders.cpu import CpuBackend, CpuDecoder, CpuEncoder
from gpu_worker.engine import render
from tests.media import MadeVideo


class SessionLost(RuntimeError):
    pass


class _TrackedDecoder(CpuDecoder):
    """A CPU decoder whose frame generators report when they end (an NVDEC session would)."""

    def __init__(self, source: InputContainer, stream: VideoStream, ended: list[str]) -> None:
        super().__init__(source, stream)
        self._ended = ended

    def frames(self, start: Fraction, end: Fraction | None) -> Iterator[DecodedFrame]:
        try:
            yield from super().frames(start, end)
        finally:
            self._ended.append("session ended")


class _FailingEncoder(CpuEncoder):
    def encode(self, frame: DecodedFrame, pts: int) -> None:
        if pts > 0:
            raise SessionLost("NVENC session lost")
        super().encode(frame, pts)


class _Backend(CpuBackend):
    def __init__(self) -> None:
        self.ended: list[str] = []

    def open_decoder(self, source: InputContainer, stream: VideoStream) -> CpuDecoder:
        return _TrackedDecoder(source, stream, self.ended)

    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> CpuEncoder:
        return _FailingEncoder(output, target)


def test_a_failing_encoder_ends_the_decoder_session_before_the_error_propagates(
    cfr25: MadeVideo, req: Callable[..., RenderRequest], tmp_path: Path
) -> None:
    backend = _Backend()
    with pytest.raises(SessionLost) as caught:
        render(req([("0", "1")]), cfr25.path, tmp_path / "out.mp4", backend=backend)
    # The traceback (kept by `caught`, as a fallback handler keeps its exception) still references
    # encode_file's frame: the generator must have been closed explicitly, not by garbage collection.
    assert caught.value.__traceback__ is not None
    assert backend.ended == ["session ended"]
    assert list(tmp_path.iterdir()) == []
