"""Moving exports off the GPU queue (routing.reroute_waiting, run by the reconciler cron), and the
queue check in the claim that makes the move safe against a late GPU worker."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from saq.job import Status

from gpu_worker.contract import EncoderChoice, RenderRequest
from gpu_worker.fallback import Fallback, FallbackCode
from gpu_worker.routing import ExportQueues, reroute_waiting
from gpu_worker.rows import ExportRows
from gpu_worker.tasks.enqueue import enqueue_export
from gpu_worker.tasks.reconcile import reconcile
from tests.integration.jobs.farm import Farm
from tests.media import MadeVideo

GPU_WAIT_S = 30.0


@pytest.fixture
def queues(farm: Farm) -> ExportQueues:
    return ExportQueues.around(farm.queue, farm.redis, replace(farm.settings, gpu_wait_s=GPU_WAIT_S))


async def on_gpu_queue(
    farm: Farm, queues: ExportQueues, clip: MadeVideo, encoder: EncoderChoice, *, waited_s: float
) -> uuid.UUID:
    """A pending export routed to the GPU queue `waited_s` ago, its job queued there."""
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    export_id = await farm.add_export(
        user_id, video_id, RenderRequest(encoder=encoder), idle_s=waited_s, queue=queues.gpu.name
    )
    assert await enqueue_export(queues.gpu, export_id) is not None
    return export_id


async def test_a_gpu_export_past_its_wait_moves_to_the_cpu_queue_with_the_reason(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.GPU, waited_s=GPU_WAIT_S + 1)

    assert await reroute_waiting(rows, queues) == [str(export_id)]

    row = await farm.row(export_id)
    assert (row["status"], row["queue_name"], row["fallback_code"], row["fallback_reason"]) == (
        "pending",
        queues.cpu.name,
        "gpu_wait_expired",
        "no GPU worker took the export within 30 s",
    )
    gpu_job, cpu_job = await queues.gpu.job(str(export_id)), await queues.cpu.job(str(export_id))
    assert gpu_job is not None
    assert gpu_job.status is Status.ABORTED
    assert cpu_job is not None
    assert cpu_job.status is Status.QUEUED


async def test_a_late_gpu_claim_of_a_moved_export_fails_and_the_cpu_claim_keeps_the_reason(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.GPU, waited_s=GPU_WAIT_S + 1)
    await reroute_waiting(rows, queues)

    assert await rows.claim(export_id, "gpu-box:1", queues.gpu.name) is None
    claim = await rows.claim(export_id, "cpu-box:1", queues.cpu.name)

    assert claim is not None
    assert (claim.attempt, claim.routed) == (
        1,
        Fallback(FallbackCode.GPU_WAIT_EXPIRED, "no GPU worker took the export within 30 s"),
    )


async def test_an_export_a_gpu_worker_claimed_first_is_not_moved(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.GPU, waited_s=GPU_WAIT_S + 1)
    assert await rows.claim(export_id, "gpu-box:1", queues.gpu.name) is not None

    assert await reroute_waiting(rows, queues) == []
    assert (await farm.row(export_id))["queue_name"] == queues.gpu.name


async def test_a_gpu_export_within_its_wait_stays_on_the_gpu_queue(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.GPU, waited_s=GPU_WAIT_S - 5)

    assert await reroute_waiting(rows, queues) == []
    job = await queues.gpu.job(str(export_id))
    assert job is not None
    assert job.status is Status.QUEUED


async def test_an_auto_export_moves_at_once_when_no_gpu_worker_is_left_for_it(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.AUTO, waited_s=0)

    assert await reroute_waiting(rows, queues) == [str(export_id)]
    row = await farm.row(export_id)
    assert (row["queue_name"], row["fallback_code"], row["fallback_reason"]) == (
        queues.cpu.name,
        "no_gpu_worker",
        "no healthy GPU worker with NVENC H.264 is online",
    )


async def test_a_moved_export_no_longer_waits_for_a_gpu_worker(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.GPU, waited_s=GPU_WAIT_S + 1)
    await farm.sql(
        "UPDATE exports SET waiting_code = 'no_gpu_worker', wait_until = now() WHERE id = :id", id=export_id
    )

    await reroute_waiting(rows, queues)

    row = await farm.row(export_id)
    assert (row["waiting_code"], row["wait_until"]) == (None, None)


async def test_a_claimed_export_no_longer_waits_for_a_gpu_worker(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await on_gpu_queue(farm, queues, clip, EncoderChoice.GPU, waited_s=0)
    await farm.sql(
        "UPDATE exports SET waiting_code = 'no_gpu_worker', wait_until = now() WHERE id = :id", id=export_id
    )

    assert await rows.claim(export_id, "gpu-box:1", queues.gpu.name) is not None

    row = await farm.row(export_id)
    assert (row["waiting_code"], row["wait_until"]) == (None, None)


async def dead_attempt(farm: Farm, clip: MadeVideo, queue: str | None) -> uuid.UUID:
    """A 'processing' export without a job, routed to `queue` (None: from before routing)."""
    user_id = await farm.add_user()
    video_id = await farm.add_video(user_id, clip.path)
    export_id = await farm.add_export(user_id, video_id, RenderRequest(), status="processing", attempt=1)
    await farm.sql("UPDATE exports SET queue_name = :queue WHERE id = :id", queue=queue, id=export_id)
    return export_id


async def test_a_dead_attempt_on_the_gpu_queue_is_handed_back_to_the_gpu_queue(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await dead_attempt(farm, clip, queues.gpu.name)

    on_cpu = await reconcile(rows, queues.cpu, farm.redis, unrouted=True)
    on_gpu = await reconcile(rows, queues.gpu, farm.redis, unrouted=False)

    assert (on_cpu.requeued, on_gpu.requeued) == ([], [str(export_id)])
    job = await queues.gpu.job(str(export_id))
    assert job is not None
    assert job.status is Status.QUEUED
    assert (await farm.row(export_id))["status"] == "pending"


async def test_an_export_from_before_routing_is_reconciled_by_the_cpu_queue_only(
    farm: Farm, rows: ExportRows, queues: ExportQueues, clip: MadeVideo
) -> None:
    export_id = await dead_attempt(farm, clip, None)

    on_gpu = await reconcile(rows, queues.gpu, farm.redis, unrouted=False)
    on_cpu = await reconcile(rows, queues.cpu, farm.redis, unrouted=True)

    assert (on_gpu.requeued, on_cpu.requeued) == ([], [str(export_id)])
    job = await queues.cpu.job(str(export_id))
    assert job is not None
    assert job.status is Status.QUEUED
