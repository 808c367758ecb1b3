"""Prometheus metrics of one render worker process, served on `vexport worker --metrics-port P`.

What happens inside a worker (how long renders take, at what speed, on which encoder, why a GPU
was not used, whether its GPU is healthy) is only known there, so each worker exports it itself;
the farm-wide numbers (exports by status, queue depth) are the API's `/metrics`.

- `vexport_render_seconds{kind,mode}` (histogram): wall time of a completed export's renders,
  by the encoder kind that produced it (gpu|cpu) and the export mode (single|clips);
- `vexport_render_fps` (gauge): frames per second of the renders running now (0 when idle), and
  `vexport_render_average_fps{kind}` (histogram): each completed export's average;
- `vexport_exports_finished_total{outcome}`: every export job this worker ended, by outcome;
- `vexport_encoder_used_total{kind,encoder}`: completed exports by encoder (h264_nvenc, libx264...);
- `vexport_fallbacks_total{reason}`: completed exports that did not render on the GPU although the
  job allowed it, by a bounded reason class (`fallback_class` maps the recorded free text);
- `vexport_gpu_healthy{gpu}`: 1 while this worker would render on that GPU, read at scrape time;
- `vexport_worker_info{worker_id,queue,kind,gpu}`: 1, to join the above with the registry.

The metrics live in one registry per process (`METRICS`): a farm runs one worker per process,
and an in-process test worker only adds to counters nobody scrapes. The HTTP server is a few lines
of asyncio on the worker's own loop, so a scrape reads the same objects the jobs update without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from saq import Job, Status

from gpu_worker.breaker import BREAKER_KEY, CircuitBreaker
from gpu_worker.contract import EXPORT_TASK
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

FallbackClass = Literal[
    "no_gpu",
    "codec_unsupported",
    "gpu_error",
    "circuit_open",
    "routed_cpu",
    "no_gpu_worker_in_time",
    "other",
]
_FALLBACK_RULES: tuple[tuple[FallbackClass, re.Pattern[str]], ...] = (
    ("circuit_open", re.compile(r"circuit open")),
    ("no_gpu_worker_in_time", re.compile(r"no GPU worker took")),
    ("routed_cpu", re.compile(r"no healthy GPU worker|renders on the CPU only")),
    (
        "gpu_error",
        re.compile(r"failed mid-render|NVENC failed|NVDEC failed|session limit|session lost|out of memory"),
    ),
    ("codec_unsupported", re.compile(r"NVENC has no|does not support|cannot decode|not probed")),
    (
        "no_gpu",
        re.compile(
            r"no NVIDIA|not present on this GPU|GPU \d+ not found|not installed|driver too old|probe failed|"
            r"failed to load|not loadable|NVDEC library missing"
        ),
    ),
)
RENDER_SECONDS_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
FPS_BUCKETS = (5, 10, 25, 50, 100, 200, 400, 800, 1600, float("inf"))
METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
_READ_TIMEOUT_S = 5.0
_MAX_HEADER_LINES = 100


def fallback_class(reason: str) -> FallbackClass:
    """The bounded label for a recorded fallback reason (free text that names GPUs, codecs, errors)."""
    for label, pattern in _FALLBACK_RULES:
        if pattern.search(reason):
            return label
    return "other"


def encoder_kind(encoder_used: str) -> Literal["gpu", "cpu"]:
    """'h264_nvenc@GPU0' is the GPU; a software encoder name ('libx264') is the CPU."""
    return "gpu" if "_nvenc" in encoder_used else "cpu"


GpuHealth = Callable[[], Mapping[int, bool]]


def gpu_health(report: GpuReport, gpu_index: int | None, breaker: CircuitBreaker | None) -> dict[int, bool]:
    """Each GPU this worker may render on: healthy when its NVENC encoded a frame in the probe and,
    for the GPU the circuit breaker guards, while the breaker is not open."""
    health = {
        gpu.index: any(s.works for s in gpu.nvenc.values()) and report.reason is None
        for gpu in report.gpus
        if gpu_index is None or gpu.index == gpu_index
    }
    if breaker is not None and breaker.gpu_index in health:
        health[breaker.gpu_index] = health[breaker.gpu_index] and breaker.healthy
    return health


class _GpuHealthCollector(Collector):
    """`vexport_gpu_healthy`, read from the worker's current source on every scrape."""

    def __init__(self) -> None:
        self.source: GpuHealth = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vexport_gpu_healthy",
            "1 while this worker renders on the GPU, 0 while it would not",
            labels=["gpu"],
        )
        for index, healthy in sorted(self.source().items()):
            family.add_metric([str(index)], 1.0 if healthy else 0.0)
        yield family


class WorkerMetrics:
    """The worker's metric objects in a registry of their own (never the global default one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.render_seconds = Histogram(
            "vexport_render_seconds",
            "Wall time of a completed export's renders",
            ["kind", "mode"],
            buckets=RENDER_SECONDS_BUCKETS,
            registry=r,
        )
        self.average_fps = Histogram(
            "vexport_render_average_fps",
            "Average frames per second of each completed export",
            ["kind"],
            buckets=FPS_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "vexport_exports_finished", "Export jobs this worker ended, by outcome", ["outcome"], registry=r
        )
        self.encoder_used = Counter(
            "vexport_encoder_used", "Completed exports by encoder", ["kind", "encoder"], registry=r
        )
        self.fallbacks = Counter(
            "vexport_fallbacks",
            "Completed exports that fell back to the CPU, by reason",
            ["reason"],
            registry=r,
        )
        self.info = Gauge(
            "vexport_worker_info",
            "This worker's identity",
            ["worker_id", "queue", "kind", "gpu"],
            registry=r,
        )
        self._running: dict[object, float] = {}
        fps = Gauge("vexport_render_fps", "Frames per second of the renders running now", registry=r)
        fps.set_function(lambda: sum(self._running.values()))
        self._gpus = _GpuHealthCollector()
        r.register(self._gpus)

    def describe_worker(self, *, worker_id: str, queue: str, gpu_index: int | None) -> None:
        """A GPU worker renders on `gpu_index`; a CPU worker has none."""
        self.info.clear()
        kind, gpu = ("cpu", "") if gpu_index is None else ("gpu", str(gpu_index))
        self.info.labels(worker_id, queue, kind, gpu).set(1)

    def watch_gpus(self, source: GpuHealth) -> None:
        """Where `vexport_gpu_healthy` reads from: the probe, or the circuit breaker when there is one."""
        self._gpus.source = source

    def attempt(self) -> AttemptMetrics:
        return AttemptMetrics(self)

    def job_finished(self, outcome: str) -> None:
        self.finished.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AttemptMetrics:
    """One render attempt's share: its live fps while it renders, its totals once it completes."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self._seconds = 0.0
        self._frames = 0

    def progress(self, fps: float) -> None:
        self._metrics._running[self] = fps

    def rendered(self, frames: int, seconds: float) -> None:
        """One render (the export, or one of its clips) is done."""
        self._frames += frames
        self._seconds += seconds
        self._metrics._running.pop(self, None)

    def completed(self, encoder_used: str, fallback_reason: str | None, mode: str) -> None:
        m, kind = self._metrics, encoder_kind(encoder_used)
        m.render_seconds.labels(kind, mode).observe(self._seconds)
        if self._seconds > 0:
            m.average_fps.labels(kind).observe(self._frames / self._seconds)
        m.encoder_used.labels(kind, encoder_used.partition("@")[0]).inc()
        if fallback_reason is not None:
            m.fallbacks.labels(fallback_class(fallback_reason)).inc()

    def close(self) -> None:
        self._metrics._running.pop(self, None)


class MetricsServer:
    """`GET /metrics` (Prometheus text format) and `GET /health` (503 until the worker's startup is
    done, then 200: the compose healthcheck) on the worker's event loop."""

    def __init__(self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - meant for the farm's network
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.ready = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("metrics on http://%s:%d/metrics", self._host, self._port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await asyncio.wait_for(self._answer(reader), _READ_TIMEOUT_S)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a scraper that went away or never sent a request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
        method, _, rest = (await reader.readline()).decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        for _ in range(_MAX_HEADER_LINES):
            if (await reader.readline()).strip() == b"":
                break
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text, b"only GET\n"
        if path == METRICS_PATH:
            body = self._metrics.render()
            return "200 OK", CONTENT_TYPE_PLAIN_0_0_4, b"" if method == "HEAD" else body
        if path == HEALTH_PATH:
            return (
                ("200 OK", text, b"ok\n") if self.ready else ("503 Service Unavailable", text, b"starting\n")
            )
        return "404 Not Found", text, b"not found\n"


METRICS = WorkerMetrics()
EXPORTER_KEY = "metrics_server"


def job_outcome(job: Job) -> str:
    """How SAQ left an export job: the task's own answer when it returned (completed, failed,
    stopped, skipped), else what SAQ did with the job."""
    if job.status is Status.COMPLETE:
        return str(job.result)
    return _SAQ_OUTCOMES.get(job.status, "interrupted")


_SAQ_OUTCOMES = {
    Status.FAILED: "error",
    Status.ABORTING: "aborted",
    Status.ABORTED: "aborted",
    Status.QUEUED: "requeued",
}


async def start_exporter(ctx: dict[str, Any], port: int | None) -> None:
    """Worker startup, first thing: serve /metrics and /health (503 until `exporter_ready`)."""
    if port is not None:
        server = MetricsServer(METRICS, port)
        await server.start()
        ctx[EXPORTER_KEY] = server


def exporter_ready(
    ctx: dict[str, Any], *, worker_id: str, queue: str, settings: WorkerSettings, report: GpuReport
) -> None:
    """Worker startup, last thing (the GPU's circuit breaker is in ctx by then; a CPU worker has
    none): name this worker, read GPU health from the probe and the breaker, answer /health.
    A worker without a metrics port leaves both to the one that has it: `vexport serve` runs a CPU
    worker beside its GPU worker, and the process's one registry must keep describing the GPU."""
    server = ctx.get(EXPORTER_KEY)
    if server is None:
        return
    breaker: CircuitBreaker | None = ctx.get(BREAKER_KEY)
    METRICS.describe_worker(
        worker_id=worker_id, queue=queue, gpu_index=None if breaker is None else breaker.gpu_index
    )
    METRICS.watch_gpus(lambda: gpu_health(report, settings.gpu_index, breaker))
    server.ready = True


async def stop_exporter(ctx: dict[str, Any]) -> None:
    if server := ctx.pop(EXPORTER_KEY, None):
        await server.aclose()


async def observe_job(ctx: dict[str, Any]) -> None:
    """SAQ `after_process`: count the export job's outcome (cron jobs are not exports)."""
    job: Job = ctx["job"]
    if job.function == EXPORT_TASK:
        METRICS.job_finished(job_outcome(job))
