"""The GPU circuit breaker in a running worker: a fake L4 whose NVENC fails at the backend interface
(tests.fake_gpu), real Redis queue and registry, real Postgres rows, real renders.

Two GPU failures open the circuit; the next export renders on the CPU with the circuit's reason
and the worker's heartbeat says unhealthy, so routing sends `auto` exports to the CPU queue. After
the cool-down a good (fake) probe closes it and the next export renders on the "GPU" again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

from saq.queue.redis import RedisQueue

from gpu_worker.breaker import BREAKER_KEY, BreakerState, CircuitBreaker
from gpu_worker.contract import TERMINAL_STATUSES, RenderRequest, Segment
from gpu_worker.encoders.base import Backend
from gpu_worker.encoders.cpu import CpuBackend
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.encoders.select import Selection
from gpu_worker.registry import find_worker
from gpu_worker.routing import choose_queue
from gpu_worker.tasks.enqueue import enqueue_export
from gpu_worker.worker import build_worker
from tests.fake_gpu import L4_REPORT, FailingGpuBackend
from tests.integration.jobs.farm import Farm
from tests.media import MadeVideo

COOLDOWN_S = 8.0
"""Long enough that the third export surely starts while the circuit is open, even on a busy machine."""
WAIT_S = 30.0
SHORT = RenderRequest(segments=[Segment(Fraction("0.5"), Fraction("1"))])
CIRCUIT_OPEN = "GPU 0 circuit open after 2 failures: NVENC session lost"
GPU_FAILED = "GPU failed mid-render (NVENC session lost); re-rendered on CPU"


class WorkingGpuBackend(CpuBackend):
    """A GPU that works: renders like the CPU backend but presents itself as the GPU."""

    device = "gpu"


class FlakyGpu:
    """The fake L4's backends: NVENC dies mid-render while `failing`, else it works."""

    def __init__(self) -> None:
        self.failing = True
        self.probes: list[bool] = []

    def backend(self, selection: Selection) -> Backend:
        if selection.device != "gpu":
            return selection.backend()
        return FailingGpuBackend() if self.failing else WorkingGpuBackend()

    def probe(self, refresh: bool) -> GpuReport:
        self.probes.append(refresh)
        return L4_REPORT


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll `check` until it answers something truthy (returned), failing after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return result


async def test_repeated_gpu_failures_open_the_circuit_and_a_good_probe_closes_it(
    farm: Farm, clip: MadeVideo
) -> None:
    settings = replace(
        farm.settings,
        breaker_failures=2,
        breaker_window_s=60.0,
        breaker_cooldown_s=COOLDOWN_S,
        heartbeat_s=0.2,
        worker_ttl_s=5.0,
    )
    gpu = FlakyGpu()
    worker = build_worker(settings, probe=gpu.probe, build_backend=gpu.backend)
    queue = RedisQueue(farm.redis, name=settings.gpu_queue_name)
    await farm.redis.setex(queue.namespace("sweep"), 3600, 1)  # as open_farm does: exact runs
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)

    async def submit() -> uuid.UUID:
        export_id = await farm.add_export(user_id, video_id, SHORT, queue=queue.name)
        assert await enqueue_export(queue, export_id) is not None
        return export_id

    async def finished(export_id: uuid.UUID) -> tuple[str, str, str | None]:
        async def terminal() -> Any:
            row = await farm.row(export_id)
            return row if row["status"] in TERMINAL_STATUSES else None

        row = await until(terminal, f"export {export_id}")
        return row["status"], row["encoder_used"], row["fallback_reason"]

    task = asyncio.create_task(worker.start())
    try:
        assert worker.queue.name == settings.gpu_queue_name
        first, second, third = [await submit() for _ in range(3)]

        assert await finished(first) == ("completed", "libx264", GPU_FAILED)
        assert await finished(second) == ("completed", "libx264", GPU_FAILED)
        assert await finished(third) == ("completed", "libx264", CIRCUIT_OPEN)
        breaker: CircuitBreaker = worker.context[BREAKER_KEY]
        assert breaker.state is BreakerState.OPEN

        async def unhealthy_heartbeat() -> Any:
            info = await find_worker(farm.redis, str(worker.id))
            return info if info is not None and not info.healthy else None

        info = await until(unhealthy_heartbeat, "the heartbeat to report the open circuit")
        assert info.breaker is not None
        assert (info.breaker["state"], info.breaker["last_error"]) == ("open", "NVENC session lost")
        route = choose_queue([info], codec="h264", encoder="auto", settings=settings)
        assert (route.queue, route.gpu) == (settings.cpu_queue_name, False)

        async def half_open() -> bool:
            return breaker.state is BreakerState.HALF_OPEN

        await until(half_open, "the cool-down")
        gpu.failing = False
        fourth = await submit()

        assert await finished(fourth) == ("completed", "h264_nvenc@GPU0", None)
        assert breaker.describe()["state"] == "closed"
        assert gpu.probes == [False, True]  # the start-up probe, then the half-open re-probe
    finally:
        await worker.stop()
        await task
