"""Why an export does not render on the GPU, or waits for one: typed codes with a human detail.

Programs and pages decide on the code (a warning or a note, a metric's label); the detail is the
sentence shown to people, free to name GPUs, codecs and errors. Rows store both (`fallback_code` +
`fallback_reason`, `waiting_code` + `wait_until`), and so do the API and every progress message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FallbackCode(StrEnum):
    """Why the CPU renders (or rendered) an export whose encoder choice allowed the GPU."""

    NO_GPU_WORKER = "no_gpu_worker"
    """Routing: no healthy GPU worker that encodes the codec was online."""
    CODEC_UNSUPPORTED = "codec_unsupported"
    """NVENC has no encoder for the codec (VP9, ProRes)."""
    GPU_WAIT_EXPIRED = "gpu_wait_expired"
    """A `gpu` export waited GPU_WAIT_S and no GPU worker took it."""
    GPU_UNAVAILABLE = "gpu_unavailable"
    """The worker's own GPUs could not encode it (no driver, the probe failed for the codec)."""
    CIRCUIT_OPEN = "circuit_open"
    """The worker's GPU failed repeatedly and is resting (its circuit breaker is open)."""
    GPU_FAILED = "gpu_failed"
    """The GPU failed mid-render and the CPU rendered it again."""
    CPU_ONLY_WORKER = "cpu_only_worker"
    """The worker that took it renders on the CPU only (`--encoder cpu`)."""


class WaitingCode(StrEnum):
    """Why a pending export waits for longer than its queue's backlog explains."""

    NO_GPU_WORKER = "no_gpu_worker"
    """A `gpu` export with no GPU worker online: it waits until `wait_until`, then goes to the CPU."""


WAITING_REASONS = {
    WaitingCode.NO_GPU_WORKER: "no GPU worker is online: the export waits for one until `wait_until`, "
    "then renders on the CPU",
}
"""The human detail of each waiting code (the API's `waiting_reason`)."""


@dataclass(frozen=True, slots=True)
class Fallback:
    code: FallbackCode
    detail: str


def fallback_of(code: str | None, detail: str | None) -> Fallback | None:
    """The pair as a row stores it; None unless both are set (rows from before codes have no code)."""
    return Fallback(FallbackCode(code), detail) if code and detail else None
