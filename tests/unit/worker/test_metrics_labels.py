"""The worker metrics' bounded labels: each fallback reason the code really records maps to one
class, encoder names to their kind, and SAQ's end states to export-job outcomes."""

from __future__ import annotations

import pytest
from saq import Job, Status

from gpu_worker.breaker import CircuitBreaker
from gpu_worker.encoders.nvenc import GpuBackendError, import_failure_reason, nvenc_failure_reason
from gpu_worker.encoders.probe import CodecSupport, GpuInfo, GpuReport
from gpu_worker.encoders.select import after_gpu_failure, no_nvenc_reason, select_backend
from gpu_worker.metrics import encoder_kind, fallback_class, job_outcome
from gpu_worker.routing import gpu_wait_expired, no_gpu_worker
from gpu_worker.tasks.export import CPU_ONLY_REASON


def open_breaker() -> CircuitBreaker:
    breaker = CircuitBreaker(0, threshold=1, window_s=60, cooldown_s=60, probe=lambda: None)
    breaker.record_failure("NVENC session lost")
    return breaker


def gpu_without(codec_reason: str) -> GpuReport:
    nvenc = {"h264": CodecSupport(works=False, reason=codec_reason)}
    return GpuReport(driver_present=True, gpus=(GpuInfo(index=0, name="L4", nvenc=nvenc),))


def mid_render_failure() -> str | None:
    works = GpuReport(
        driver_present=True, gpus=(GpuInfo(index=0, name="L4", nvenc={"h264": CodecSupport(works=True)}),)
    )
    selection = select_backend("auto", "h264", works)
    fallback = after_gpu_failure(selection, GpuBackendError("NVENC session lost")).fallback
    return fallback.detail if fallback else None


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        (GpuReport(driver_present=False, reason="no NVIDIA driver").nvenc_reason("h264"), "no_gpu"),
        (GpuReport(driver_present=True).nvenc_reason("h264"), "no_gpu"),
        (
            gpu_without(nvenc_failure_reason("h264", "NV_ENC_ERR_NO_ENCODE_DEVICE (1)")).nvenc_reason("h264"),
            "no_gpu",
        ),
        (gpu_without("x").nvenc_reason("h264", gpu_index=3), "no_gpu"),
        (import_failure_reason("libnvidia-encode.so.1: cannot open shared object file"), "no_gpu"),
        ("PyNvVideoCodec not installed (install the 'gpu' extra)", "no_gpu"),
        (no_nvenc_reason("vp9"), "codec_unsupported"),
        (nvenc_failure_reason("av1", "NV_ENC_ERR_UNSUPPORTED_PARAM (12)"), "codec_unsupported"),
        (mid_render_failure(), "gpu_error"),
        (nvenc_failure_reason("h264", "NV_ENC_ERR_OUT_OF_MEMORY (10)"), "gpu_error"),
        (open_breaker().reason, "circuit_open"),
        (CPU_ONLY_REASON, "routed_cpu"),
        (no_gpu_worker("hevc").detail, "routed_cpu"),
        (gpu_wait_expired(300).detail, "no_gpu_worker_in_time"),
        ("the disk caught fire", "other"),
    ],
)
def test_a_recorded_fallback_reason_maps_to_its_class(reason: str | None, label: str) -> None:
    assert reason is not None
    assert fallback_class(reason) == label


@pytest.mark.parametrize(
    ("encoder", "kind"),
    [("h264_nvenc@GPU0", "gpu"), ("av1_nvenc@GPU1", "gpu"), ("libx264", "cpu"), ("libsvtav1", "cpu")],
)
def test_the_encoder_name_says_its_kind(encoder: str, kind: str) -> None:
    assert encoder_kind(encoder) == kind


@pytest.mark.parametrize(
    ("status", "result", "outcome"),
    [
        (Status.COMPLETE, "completed", "completed"),
        (Status.COMPLETE, "skipped", "skipped"),
        (Status.FAILED, None, "error"),
        (Status.ABORTED, None, "aborted"),
        (Status.QUEUED, None, "requeued"),
        (Status.ACTIVE, None, "interrupted"),
    ],
)
def test_saq_s_end_state_is_the_job_s_outcome(status: Status, result: str | None, outcome: str) -> None:
    job = Job("export_video", kwargs={"export_id": "e"}, status=status, result=result)
    assert job_outcome(job) == outcome
