"""`vexport serve`'s in-process workers (gpu_worker.worker.serve_workers): on a GPU machine (the fake
L4 of tests.fake_gpu) a GPU worker on the GPU queue and a CPU worker on the CPU queue, both in the
registry under their own ids, so a `cpu` export renders on a one-machine install; on a machine
without a GPU one CPU worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction

from saq import Worker

from gpu_worker.contract import TERMINAL_STATUSES, EncoderChoice, RenderRequest, Segment
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.registry import WorkerInfo, live_workers
from gpu_worker.worker import serve_workers, worker_id
from tests.fake_gpu import L4_REPORT
from tests.integration.jobs.farm import Farm
from tests.media import MadeVideo

WAIT_S = 30.0
NO_DRIVER = GpuReport(driver_present=False, reason="no NVIDIA driver (libcuda.so.1 not found)")


def l4_probe(refresh: bool) -> GpuReport:
    return L4_REPORT


def no_gpu_probe(refresh: bool) -> GpuReport:
    return NO_DRIVER


@asynccontextmanager
async def running(workers: list[Worker]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.start()) for w in workers]
    try:
        yield
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
        await asyncio.gather(*tasks)


async def registered(farm: Farm, ids: set[str]) -> dict[str, WorkerInfo]:
    """The workers with these ids once all of them heartbeat (the test Redis is shared)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = {w.id: w for w in await live_workers(farm.redis) if w.id in ids}
        if found.keys() == ids:
            return found
        assert time.monotonic() < deadline, f"workers {sorted(ids - found.keys())} never registered"
        await asyncio.sleep(0.05)


async def test_on_a_gpu_machine_serve_runs_a_gpu_worker_and_a_cpu_worker_with_their_own_ids(
    farm: Farm,
) -> None:
    settings = farm.settings
    gpu_worker, cpu_worker = serve_workers(settings, probe=l4_probe)
    host_pid = worker_id()

    assert (gpu_worker.id, gpu_worker.queue.name) == (host_pid, settings.gpu_queue_name)
    assert (cpu_worker.id, cpu_worker.queue.name) == (f"{host_pid}:cpu", settings.cpu_queue_name)
    async with running([gpu_worker, cpu_worker]):
        seen = await registered(farm, {host_pid, f"{host_pid}:cpu"})
    gpu_info, cpu_info = seen[host_pid], seen[f"{host_pid}:cpu"]
    assert (gpu_info.kind, gpu_info.gpu_index, gpu_info.queues) == ("gpu", 0, [settings.gpu_queue_name])
    assert (cpu_info.kind, cpu_info.gpu_index, cpu_info.queues) == ("cpu", None, [settings.cpu_queue_name])


async def test_on_a_gpu_machine_serve_renders_a_cpu_export(farm: Farm, clip: MadeVideo) -> None:
    request = RenderRequest(segments=[Segment(Fraction(0), Fraction(1))], encoder=EncoderChoice.CPU)
    _, export_id = await farm.submit(clip.path, request)

    async with running(serve_workers(farm.settings, probe=l4_probe)):
        deadline = time.monotonic() + WAIT_S
        while (row := await farm.row(export_id))["status"] not in TERMINAL_STATUSES:
            assert time.monotonic() < deadline, f"export still {row['status']}"
            await asyncio.sleep(0.05)

    assert (row["status"], row["encoder_used"], row["worker_id"]) == (
        "completed",
        "libx264",
        f"{worker_id()}:cpu",
    )


async def test_without_a_gpu_serve_runs_one_cpu_worker(farm: Farm) -> None:
    (only,) = serve_workers(farm.settings, probe=no_gpu_probe)
    await only.queue.disconnect()

    assert (only.id, only.queue.name) == (worker_id(), farm.settings.cpu_queue_name)
