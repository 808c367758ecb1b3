"""Throttled progress reporting: at most a few callbacks a second, always one at the end."""

from __future__ import annotations

import time
from collections.abc import Callable

from gpu_worker.contract import Phase, ProgressReport

ProgressCallback = Callable[[ProgressReport], None]

MIN_INTERVAL_S = 0.25


class ProgressMeter:
    """Counts frames and calls back no more than every MIN_INTERVAL_S, so encoding never waits on it."""

    def __init__(
        self, callback: ProgressCallback | None, frames_total: int, phase: Phase = Phase.RENDERING
    ) -> None:
        self._callback = callback
        self.frames_total = frames_total
        self.frames_done = 0
        self.phase = phase
        self._started = time.monotonic()
        self._last = float("-inf")

    def advance(self, frames: int = 1) -> None:
        self.frames_done += frames
        now = time.monotonic()
        if now - self._last >= MIN_INTERVAL_S:
            self._emit(now)

    def finish(self) -> None:
        self._emit(time.monotonic(), force=True)

    def _emit(self, now: float, force: bool = False) -> None:
        if self._callback is None or (not force and now - self._last < MIN_INTERVAL_S):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-6)
        fps = self.frames_done / elapsed
        left = self.frames_total - self.frames_done
        eta = left / fps if fps > 0 else None
        self._callback(ProgressReport(self.phase, self.frames_done, self.frames_total, round(fps, 2), eta))
