"""/ws/ui/exports over a real server: HTML fragments (card + history row) for htmx's ws extension.

A live server (`tests.fixtures.live`) rather than the test client: see there why. Progress is
published the way the worker does, through `gpu_worker.progress.publish_progress`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from backend.lib.settings import Settings
from gpu_worker.contract import ExportStatus, Phase, ProgressMessage
from gpu_worker.progress import publish_progress
from tests.fixtures.app import csrf_headers
from tests.fixtures.live import RECV_TIMEOUT_S, Account, rest_until_closed
from tests.integration.pages.export_ui.conftest import FORM, Sql, card_ids, row_ids


@pytest.fixture
def live_settings(ui_settings: Settings) -> Settings:
    """What `live` serves (see tests/integration/conftest.py)."""
    return ui_settings


@pytest.fixture
async def export_id(owner: Account, clip: Path) -> str:
    files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
    headers = await csrf_headers(owner.http)
    r = await owner.http.post("/api/videos", files=files, headers=headers)
    assert r.status_code == 201, r.text
    r = await owner.http.post(f"/videos/{r.json()['id']}/exports", data=FORM, headers=headers)
    assert r.status_code == 201, r.text
    (made,) = card_ids(r.text)
    return made


def browser_socket(live: str, acc: Account | None, origin: str | None = None) -> connect:
    headers = {"Origin": origin or f"http://{live}"}
    if acc is not None:
        headers["Cookie"] = acc.cookie
    return connect(f"ws://{live}/ws/ui/exports", additional_headers=headers)


async def fragment(ws: ClientConnection) -> str:
    """One update of an export: its card and its history row, a message each."""
    card = str(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
    row = str(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
    assert (len(card_ids(card)), row_ids(card), card_ids(row), len(row_ids(row))) == (1, [], [], 1)
    return card + row


async def test_connecting_sends_the_card_and_row_of_each_active_export(
    live: str, owner: Account, export_id: str
) -> None:
    async with browser_socket(live, owner) as ws:
        html = await fragment(ws)
    assert (card_ids(html), row_ids(html)) == ([export_id], [export_id])
    assert f'<article id="export-{export_id}" class="export" data-status="pending"' in html
    assert f'<tr id="history-{export_id}" class="history-row" data-status="pending"' in html


async def test_the_card_and_row_of_a_gpu_export_waiting_for_a_gpu_worker_say_so_at_once(
    live: str, owner: Account, export_id: str, sql: Sql
) -> None:
    await sql(
        "UPDATE exports SET encoder_requested = 'gpu', fallback_code = NULL, fallback_reason = NULL,"
        " waiting_code = 'no_gpu_worker', wait_until = '2026-01-02T03:04:00Z' WHERE id = :id",
        id=export_id,
    )
    async with browser_socket(live, owner) as ws:
        html = await fragment(ws)
    note = (
        '<p class="gpu-note warning" data-code="no_gpu_worker">Waiting for a GPU worker until 03:04 UTC:'
        " none is online; then it renders on the CPU</p>"
    )
    assert note in html
    assert note.replace("<p ", "<span ").replace("</p>", "</span>") in html


async def test_a_published_progress_message_arrives_as_a_fragment(
    live: str, owner: Account, export_id: str, redis: Redis
) -> None:
    async with browser_socket(live, owner) as ws:
        await fragment(ws)
        await publish_progress(
            redis,
            ProgressMessage(
                export_id=export_id,
                user_id=owner.user_id,
                seq=0,
                status=ExportStatus.PROCESSING,
                phase=Phase.RENDERING,
                percent=40,
                fps=61.4,
                eta_s=75,
            ),
        )
        html = await fragment(ws)
    assert card_ids(html) == [export_id]
    assert 'data-status="processing"' in html
    assert 'aria-valuenow="40"' in html
    assert '<span class="phase">rendering</span>' in html
    assert '<span class="fps">61 fps</span>' in html
    assert '<span class="eta">1 min 15 s left</span>' in html


async def test_a_terminal_message_renders_the_final_row_with_its_download(
    live: str, owner: Account, export_id: str, redis: Redis, sql: Sql
) -> None:
    async with browser_socket(live, owner) as ws:
        await fragment(ws)
        await sql(
            "UPDATE exports SET status = 'completed', progress = 100, size_bytes = 2500000, "
            "encoder_used = 'libx264', fallback_code = 'gpu_unavailable',"
            " fallback_reason = 'no NVIDIA GPU on this worker' WHERE id = :id",
            id=export_id,
        )
        await publish_progress(
            redis,
            ProgressMessage(export_id=export_id, user_id=owner.user_id, seq=0, status=ExportStatus.COMPLETED),
        )
        html = await fragment(ws)
    assert 'data-status="completed"' in html
    assert 'aria-valuenow="100"' in html
    assert html.count(f'href="/api/exports/{export_id}/download"') == 2
    assert '<span class="encoder-badge encoder-cpu" title="libx264">CPU</span>' in html
    assert (
        '<span class="gpu-note info" data-code="gpu_unavailable">'
        "Rendered on the CPU: no NVIDIA GPU on this worker</span>"
    ) in html
    assert ">Cancel</button>" not in html


async def test_an_anonymous_socket_is_closed_with_4401(live: str) -> None:
    async with browser_socket(live, None) as ws:
        messages, code = await rest_until_closed(ws)
    assert (messages, code) == ([], 4401)


async def test_a_cross_site_origin_is_closed_with_4403(live: str, owner: Account) -> None:
    async with browser_socket(live, owner, origin="http://evil.example") as ws:
        messages, code = await rest_until_closed(ws)
    assert (messages, code) == ([], 4403)


async def test_an_export_created_while_connected_arrives_with_its_video_and_created_time(
    live: str, owner: Account, export_id: str
) -> None:
    headers = await csrf_headers(owner.http)
    video_id = (await owner.http.get(f"/api/exports/{export_id}")).json()["video_id"]
    async with browser_socket(live, owner) as ws:
        await fragment(ws)
        r = await owner.http.post(f"/videos/{video_id}/exports", data=FORM, headers=headers)
        assert r.status_code == 201, r.text
        (made,) = card_ids(r.text)
        html = await fragment(ws)
    assert (card_ids(html), row_ids(html)) == ([made], [made])
    assert html.count(f'data-status="pending" data-video-id="{video_id}" data-created="') == 2
