"""`vexport_gpu_healthy{gpu}`: the probe says whether a GPU's NVENC works at all, the circuit
breaker whether the worker would use it right now; read on every scrape."""

from __future__ import annotations

from gpu_worker.breaker import CircuitBreaker
from gpu_worker.encoders.probe import CodecSupport, GpuInfo, GpuReport
from gpu_worker.metrics import WorkerMetrics, gpu_health
from tests.prom import parse

WORKS = {"h264": CodecSupport(works=True), "av1": CodecSupport(works=False, reason="no AV1")}
BROKEN = {"h264": CodecSupport(works=False, reason="NVENC not present on this GPU (e.g. H100)")}
REPORT = GpuReport(
    driver_present=True,
    gpus=(GpuInfo(index=0, name="L4", nvenc=WORKS), GpuInfo(index=1, name="H100", nvenc=BROKEN)),
)


def healthy_gauge(metrics: WorkerMetrics) -> dict[str, float]:
    samples = parse(metrics.render().decode())
    return {dict(labels)["gpu"]: v for (name, labels), v in samples.items() if name == "vexport_gpu_healthy"}


def test_without_a_breaker_each_gpu_is_healthy_when_its_nvenc_encoded_in_the_probe() -> None:
    metrics = WorkerMetrics()
    metrics.watch_gpus(lambda: gpu_health(REPORT, None, None))
    assert healthy_gauge(metrics) == {"0": 1.0, "1": 0.0}


def test_a_worker_pinned_to_one_gpu_reports_only_that_one() -> None:
    metrics = WorkerMetrics()
    metrics.watch_gpus(lambda: gpu_health(REPORT, 1, None))
    assert healthy_gauge(metrics) == {"1": 0.0}


def test_the_gauge_follows_the_breaker_open_then_half_open_after_the_cool_down() -> None:
    now = [1000.0]
    breaker = CircuitBreaker(
        0, threshold=2, window_s=60, cooldown_s=30, probe=lambda: None, clock=lambda: now[0]
    )
    metrics = WorkerMetrics()
    metrics.watch_gpus(lambda: gpu_health(REPORT, 0, breaker))
    seen = [healthy_gauge(metrics)]

    breaker.record_failure("NVENC session lost")
    seen.append(healthy_gauge(metrics))
    breaker.record_failure("NVENC session lost")
    seen.append(healthy_gauge(metrics))
    now[0] += 30
    seen.append(healthy_gauge(metrics))

    assert seen == [{"0": 1.0}, {"0": 1.0}, {"0": 0.0}, {"0": 1.0}]


def test_a_machine_without_a_driver_has_no_gpu_samples() -> None:
    metrics = WorkerMetrics()
    metrics.watch_gpus(
        lambda: gpu_health(GpuReport(driver_present=False, reason="no NVIDIA driver"), None, None)
    )
    assert healthy_gauge(metrics) == {}
