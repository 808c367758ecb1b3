"""What cards, history rows and the dialog say about the GPU: a note when the CPU renders an `auto`
export (a normal outcome), a warning when a `gpu` export waits for a GPU worker or could not have one."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from backend.lib.settings import Settings
from gpu_worker.registry import WORKERS_KEY, worker_key
from tests.fake_gpu import l4_worker
from tests.integration.pages.export_ui.conftest import Sql, start

AUTO_ON_CPU = "no healthy GPU worker with NVENC H.264 is online"


@pytest.fixture
async def gpu_worker_online(redis: Redis, ui_settings: Settings) -> AsyncIterator[None]:
    """A live GPU worker's heartbeat in the registry, as the worker writes it."""
    info = l4_worker(f"gpu-box:{uuid.uuid4().hex[:8]}", ui_settings.core.gpu_queue_name)
    await redis.set(worker_key(info.id), msgspec.json.encode(info), px=60_000)
    await redis.sadd(WORKERS_KEY, info.id)  # type: ignore[misc]
    yield
    await redis.delete(worker_key(info.id))
    await redis.srem(WORKERS_KEY, info.id)  # type: ignore[misc]


def notes(html: str) -> list[tuple[str, str, str]]:
    """(kind, code, text) of every GPU note in a fragment."""
    found = re.findall(r'<(?:p|span) class="gpu-note (\w+)" data-code="(\w+)">([^<]*)</', html)
    return [(kind, code, text) for kind, code, text in found]


async def card(c: AsyncTestClient[Any], video_id: str) -> str:
    return (await c.get(f"/videos/{video_id}")).text


async def history(c: AsyncTestClient[Any]) -> str:
    return (await c.get("/exports")).text


async def test_an_auto_export_routed_to_the_cpu_shows_a_note_not_a_warning(
    browser: AsyncTestClient[Any], video_id: str
) -> None:
    await start(browser, video_id)

    expected = [("info", "no_gpu_worker", f"Renders on the CPU: {AUTO_ON_CPU}")]
    assert notes(await card(browser, video_id)) == expected
    assert notes(await history(browser)) == expected


async def test_a_completed_auto_export_on_the_cpu_says_it_rendered_there(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    export_id = await start(browser, video_id)
    await sql(
        "UPDATE exports SET status = 'completed', encoder_used = 'libx264' WHERE id = :id", id=export_id
    )

    assert notes(await card(browser, video_id)) == [
        ("info", "no_gpu_worker", f"Rendered on the CPU: {AUTO_ON_CPU}")
    ]


async def test_a_gpu_export_the_cpu_rendered_is_a_warning(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    export_id = await start(browser, video_id, encoder="gpu")
    await sql(
        "UPDATE exports SET status = 'completed', encoder_used = 'libx264', waiting_code = NULL,"
        " wait_until = NULL, fallback_code = 'gpu_wait_expired',"
        " fallback_reason = 'no GPU worker took the export within 300 s' WHERE id = :id",
        id=export_id,
    )

    assert notes(await history(browser)) == [
        (
            "warning",
            "gpu_wait_expired",
            "GPU requested, rendered on the CPU: no GPU worker took the export within 300 s",
        )
    ]


async def test_a_gpu_export_with_no_gpu_worker_online_says_why_it_waits_and_until_when(
    browser: AsyncTestClient[Any], video_id: str, sql: Sql
) -> None:
    export_id = await start(browser, video_id, encoder="gpu")
    (until,) = await sql(
        "SELECT to_char(wait_until AT TIME ZONE 'UTC', 'HH24:MI') FROM exports WHERE id = :id", id=export_id
    )

    expected = [
        (
            "warning",
            "no_gpu_worker",
            f"Waiting for a GPU worker until {until[0]} UTC: none is online; then it renders on the CPU",
        )
    ]
    assert notes(await card(browser, video_id)) == expected
    assert notes(await history(browser)) == expected


async def test_the_dialog_says_before_submit_that_a_gpu_export_would_wait(
    browser: AsyncTestClient[Any], video_id: str
) -> None:
    html = await card(browser, video_id)

    assert (
        '<p id="export-encoder-note" class="hint" hidden>No GPU worker is online now: a GPU export waits'
        " up to 5 min, then renders on the CPU.</p>"
    ) in html


async def test_the_dialog_says_nothing_about_waiting_while_a_gpu_worker_is_online(
    browser: AsyncTestClient[Any], video_id: str, gpu_worker_online: None
) -> None:
    assert 'id="export-encoder-note"' not in await card(browser, video_id)
