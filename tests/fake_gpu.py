"""Stand-ins for a GPU on machines without one: a probed L4 and a backend whose NVENC dies mid-render,
and a marker for the tests that expect no GPU at all.
"""

from __future__ import annotations

import time

import pytest
from av.container import OutputContainer

from gpu_worker.encoders.base import DecodedFrame, VideoTarget
from gpu_worker.encoders.cpu import CpuBackend, CpuEncoder
from gpu_worker.encoders.nvenc import GpuBackendError
from gpu_worker.encoders.probe import CodecSupport, GpuInfo, GpuReport, probe_gpus
from gpu_worker.registry import VERSION, WorkerInfo, gpu_summaries

OK = CodecSupport(True)
L4 = GpuInfo(
    index=0,
    name="NVIDIA L4",
    nvenc={"h264": OK, "hevc": OK, "av1": OK},
    nvdec={"h264": OK, "hevc": OK, "av1": OK},
)
L4_REPORT = GpuReport(driver_present=True, driver_version="570.86", gpus=(L4,))
SESSION_LOST = "NVENC session lost"


class FailingEncoder:
    """A CPU encoder that loses its 'GPU' after a few frames, as NVENC can mid-render."""

    device = "gpu"
    name = "h264_nvenc@GPU0"

    def __init__(self, inner: CpuEncoder, fail_after: int) -> None:
        self._inner, self._left = inner, fail_after

    def encode(self, frame: DecodedFrame, pts: int) -> None:
        if self._left == 0:
            raise GpuBackendError(SESSION_LOST, "nvEncEncodePicture returned error 4")
        self._left -= 1
        self._inner.encode(frame, pts)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()


class FailingGpuBackend(CpuBackend):
    """Decodes and encodes like the CPU backend but presents itself as the GPU and fails after 10 frames."""

    device = "gpu"

    def open_encoder(self, output: OutputContainer, target: VideoTarget) -> FailingEncoder:  # type: ignore[override]
        return FailingEncoder(super().open_encoder(output, target), fail_after=10)


def l4_worker(worker_id: str, queue: str, *, healthy: bool = True, draining: bool = False) -> WorkerInfo:
    """The heartbeat of a live GPU worker on an L4 that takes `queue`, as the registry holds it."""
    now = time.time()
    return WorkerInfo(
        id=worker_id,
        host="gpu-box",
        pid=1,
        version=VERSION,
        started_at=now,
        last_seen=now,
        queues=[queue],
        kind="gpu",
        gpu_index=0,
        gpus=gpu_summaries(L4_REPORT),
        healthy=healthy,
        breaker=None,
        current=[],
        jobs_done=0,
        jobs_failed=0,
        draining=draining,
        concurrency=1,
        nvenc_sessions=2,
    )


# For tests that use the real probe and describe a machine without the NVIDIA driver (like CI).
without_driver = pytest.mark.skipif(probe_gpus().driver_present, reason="this machine has an NVIDIA driver")
