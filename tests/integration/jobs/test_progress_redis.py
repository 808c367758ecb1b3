"""Progress in Redis: one counter across writers, a snapshot that a late update cannot un-cancel."""

from __future__ import annotations

import uuid

import pytest

from gpu_worker.contract import ExportStatus, Phase, ProgressMessage, progress_key
from gpu_worker.progress import SNAPSHOT_TTL_S, ProgressPublisher, publish_progress, read_snapshot
from tests.integration.jobs.farm import Farm


@pytest.fixture
def ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


async def test_seq_grows_across_attempts_and_writers(farm: Farm, ids: tuple[str, str]) -> None:
    export_id, user_id = ids
    first = ProgressPublisher(farm.redis, export_id=export_id, user_id=user_id, attempt=1)
    second = ProgressPublisher(farm.redis, export_id=export_id, user_id=user_id, attempt=2)

    a = await first.update(Phase.RENDERING, percent=40, frames_done=40, frames_total=100, fps=25.5)
    b = await first.finish(ExportStatus.PENDING)
    c = await second.update(Phase.DOWNLOADING, percent=0)

    assert a is not None
    assert b is not None
    assert c is not None
    assert [a.seq, b.seq, c.seq] == [1, 2, 3]
    assert (a.frames_done, a.frames_total, a.fps, a.eta_s) == (40, 100, 25.5, None)
    assert await read_snapshot(farm.redis, export_id) == c
    assert 0 < await farm.redis.ttl(progress_key(export_id)) <= SNAPSHOT_TTL_S


async def test_updates_of_one_phase_are_throttled_and_phase_changes_carry_the_last_frames(
    farm: Farm, ids: tuple[str, str]
) -> None:
    export_id, user_id = ids
    publisher = ProgressPublisher(
        farm.redis, export_id=export_id, user_id=user_id, attempt=1, min_interval_s=60
    )

    sent = [
        await publisher.update(Phase.RENDERING, percent=10, frames_done=10, frames_total=100),
        await publisher.update(Phase.RENDERING, percent=20, frames_done=100, frames_total=100),
        await publisher.update(Phase.UPLOADING, percent=99),
        await publisher.finish(ExportStatus.COMPLETED, percent=100),
    ]

    assert [(m.percent, m.frames_done) if m else None for m in sent] == [
        (10, 10),
        None,
        (99, 100),
        (100, 100),
    ]


async def test_a_terminal_snapshot_refuses_later_progress(farm: Farm, ids: tuple[str, str]) -> None:
    export_id, user_id = ids
    cancelled = ProgressMessage(export_id=export_id, user_id=user_id, seq=0, status=ExportStatus.CANCELLED)
    stored = await publish_progress(farm.redis, cancelled)
    late = ProgressPublisher(farm.redis, export_id=export_id, user_id=user_id, attempt=1)

    assert await late.update(Phase.RENDERING, percent=50) is None
    assert await read_snapshot(farm.redis, export_id) == stored


async def test_no_snapshot_reads_as_none(farm: Farm) -> None:
    assert await read_snapshot(farm.redis, uuid.uuid4()) is None
