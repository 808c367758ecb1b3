"""A CPU render slowed to a known pace, for tests that stop a render half-way.

On an idle machine the 40 s test clip renders in under two seconds, sooner than SAQ's one-second
abort poll plus the stop can be relied on, and the 8 s one finishes before its first throttled
progress report; at FRAME_DELAY_S a frame they take at least ten and two seconds, whatever the
machine, and the tests that stop them still end after a second or two.
"""

from __future__ import annotations

import time

from av.container import OutputContainer

from gpu_worker.encoders.base import DecodedFrame, VideoTarget
from gpu_worker.encoders.cpu import CpuBackend, CpuEncoder
from gpu_worker.encoders.select import Selection

FRAME_DELAY_S = 0.01


class PacedEncoder(CpuEncoder):
    def encode(self, frame: DecodedFrame, pts: int) -> None:
        time.sleep(FRAME_DELAY_S)
        super().encode(frame, pts)


class PacedCpuBackend(CpuBackend):
    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> PacedEncoder:
        return PacedEncoder(output, target)


def paced_backend(selection: Selection) -> PacedCpuBackend:
    """A `build_backend` for `build_worker`: every selection renders on the paced CPU backend."""
    assert selection.device == "cpu", selection
    return PacedCpuBackend()
