"""The worker's Redis clients and queue during an outage: bounded retries, a dequeue that backs off
and logs once per outage, and the reconciler's schedule and thresholds read from settings."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gpu_worker.queue import (
    COMMAND_RETRIES,
    HEALTH_CHECK_INTERVAL_S,
    BackoffRedisQueue,
    redis_client,
)
from gpu_worker.settings import WorkerSettings
from gpu_worker.worker import build_worker
from tests.fixtures.live import free_port


def closed_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_the_dequeue_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    queue = BackoffRedisQueue.connect_to(closed_url(), "q")

    assert [queue.backoff_s(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


async def test_the_client_retries_a_bounded_number_of_times_with_a_health_check() -> None:
    client = redis_client(closed_url())
    try:
        retry = client.get_retry()
        assert retry is not None
        assert retry.get_retries() == COMMAND_RETRIES
        assert client.get_connection_kwargs()["health_check_interval"] == HEALTH_CHECK_INTERVAL_S
        started = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        assert 0.5 < time.monotonic() - started < 3.0  # 0.1 + 0.2 + 0.4 s of backoff, not a spin
    finally:
        await client.aclose()


async def test_a_failed_dequeue_sleeps_its_backoff_and_logs_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = BackoffRedisQueue(redis_client(closed_url()), name="q", backoff_base_s=0.2, backoff_cap_s=0.3)
    caplog.set_level(logging.WARNING, logger="gpu_worker.queue")
    try:
        for expected_failures in (1, 2, 3):
            started = time.monotonic()
            with pytest.raises(RedisConnectionError):
                await queue.dequeue(timeout=1)
            assert queue.failures == expected_failures
            assert time.monotonic() - started >= queue.backoff_s(expected_failures)
    finally:
        await queue.disconnect()

    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["queue q: Redis unreachable"]


def test_the_reconciler_schedule_and_thresholds_come_from_the_environment(tmp_path: Path) -> None:
    base = {"VEXPORT_DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40}

    defaults = WorkerSettings.from_env(base)
    custom = WorkerSettings.from_env(
        {**base, "RECONCILE_CRON": "*/5 * * * *", "STALE_AFTER_S": "90", "PENDING_GRACE_S": "15.5"}
    )

    assert (defaults.reconcile_cron, defaults.stale_after_s, defaults.pending_grace_s) == (
        "* * * * *",
        600.0,
        120.0,
    )
    assert (custom.reconcile_cron, custom.stale_after_s, custom.pending_grace_s) == (
        "*/5 * * * *",
        90.0,
        15.5,
    )
    with pytest.raises(ValueError, match="RECONCILE_CRON is not a cron expression: 'every minute'"):
        WorkerSettings.from_env({**base, "RECONCILE_CRON": "every minute"})


async def test_the_worker_schedules_the_reconciler_with_its_setting(tmp_path: Path) -> None:
    env = {"VEXPORT_DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40, "REDIS_URL": closed_url()}
    settings = WorkerSettings.from_env({**env, "RECONCILE_CRON": "*/2 * * * *"})

    worker = build_worker(settings)
    await worker.queue.disconnect()

    assert {job.function.__name__: job.cron for job in worker.cron_jobs} == {
        "reconcile_exports": "*/2 * * * *",
        "clean_scratch": "*/15 * * * *",
    }
    assert isinstance(worker.queue, BackoffRedisQueue)
