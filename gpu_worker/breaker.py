"""What stands between a job and this worker's GPU: a circuit breaker and the NVENC session slots.

The breaker counts NVENC/NVDEC failures (a session that would not open, or died mid-render). After
`threshold` failures within `window_s` it opens: for `cooldown_s` every job renders on the CPU with
the reason "GPU {i} circuit open after N failures: <last error>", and the worker's heartbeat reports
it unhealthy, so routing sends `auto` exports to the CPU queue. Once the cool-down is over it is
half-open, which counts as healthy again (otherwise no job would ever come back to try it): the next
job re-probes the GPU first and the breaker closes on a working probe or opens for another cool-down.

The worker's start-up puts the breaker in SAQ's ctx under BREAKER_KEY (the registry's heartbeat and
the metrics read `.healthy` and `.describe()` there). Methods are called from render threads and
from the event loop, so state sits behind a lock that is never held while probing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from gpu_worker.engine.errors import RenderCancelled

BREAKER_KEY = "breaker"
SLOT_POLL_S = 0.25
"""A job waiting for an NVENC session checks its cancel event this often."""

Probe = Callable[[], str | None]
"""Re-checks the GPU: None when it works again, else why not (short, user-facing)."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """The circuit breaker of one GPU (one worker process renders on one GPU)."""

    def __init__(
        self,
        gpu_index: int,
        *,
        threshold: int,
        window_s: float,
        cooldown_s: float,
        probe: Probe,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gpu_index = gpu_index
        self.threshold = threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._opened_after = 0
        self._opened_at: float | None = None
        self._retry_at: float | None = None
        self._last_error: str | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state(self._clock())

    @property
    def healthy(self) -> bool:
        """False only while open and cooling down; half-open is ready for its trial job."""
        return self.state is not BreakerState.OPEN

    @property
    def reason(self) -> str:
        """The fallback reason jobs record while the circuit is open."""
        with self._lock:
            return self._reason()

    def record_failure(self, error: str) -> None:
        """An NVENC/NVDEC failure on this GPU; opens the circuit at the threshold."""
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            self._failures.append(now)
            self._last_error = error
            if self._state(now) is BreakerState.CLOSED and len(self._failures) >= self.threshold:
                self._open(now, len(self._failures))

    def admit(self) -> str | None:
        """Before a GPU render: None to go ahead, else the reason to render on the CPU instead.

        Half-open, the first caller re-probes the GPU (seconds on a real one, so call it from a
        thread); callers arriving during that probe render on the CPU.
        """
        with self._lock:
            state = self._state(self._clock())
            if state is BreakerState.CLOSED:
                return None
            if state is BreakerState.OPEN or self._probing:
                return self._reason()
            self._probing = True
        try:
            error = self._probe()
        except Exception as exc:  # a probe that raises is a failed probe, never a failed job
            error = f"GPU probe failed: {exc}"
        with self._lock:
            self._probing = False
            if error is None:
                self._failures.clear()
                self._opened_at = self._retry_at = None
                self._opened_after = 0
                return None
            self._last_error = error
            self._open(self._clock(), self._opened_after + 1)
            return self._reason()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready snapshot for the registry's heartbeat and the metrics."""
        with self._lock:
            now = self._clock()
            self._forget_old(now)
            return {
                "gpu_index": self.gpu_index,
                "state": str(self._state(now)),
                "failures": len(self._failures),
                "threshold": self.threshold,
                "opened_at": self._opened_at,
                "retry_at": self._retry_at,
                "last_error": self._last_error,
            }

    def _state(self, now: float) -> BreakerState:
        if self._retry_at is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self._retry_at else BreakerState.HALF_OPEN

    def _open(self, now: float, failures: int) -> None:
        self._opened_after = failures
        self._opened_at = now
        self._retry_at = now + self.cooldown_s

    def _forget_old(self, now: float) -> None:
        while self._failures and self._failures[0] <= now - self.window_s:
            self._failures.popleft()

    def _reason(self) -> str:
        return f"GPU {self.gpu_index} circuit open after {self._opened_after} failures: {self._last_error}"


class NvencSessions:
    """Bounds the GPU renders this process runs at once; a job over the limit waits for a slot
    (it never drops to the CPU for it), and gives up the wait when its render is cancelled."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def hold(self, cancel: threading.Event | None = None) -> Iterator[None]:
        while not self._slots.acquire(timeout=SLOT_POLL_S):
            if cancel is not None and cancel.is_set():
                raise RenderCancelled
        try:
            yield
        finally:
            self._slots.release()
