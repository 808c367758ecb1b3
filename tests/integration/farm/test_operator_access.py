"""The operator role: `vexport create-user --operator` / `grant-operator`, the workers API and page
(404 for everyone else, like a missing path), remote drain through both, and `scope=all` exports.

The live worker here is a real registry entry: a `Presence` heartbeating for a worker built by
`build_worker` (not started), on the test Redis, which is shared, so lookups go by its own id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from backend.__main__ import main as vexport
from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.encoders.probe import GpuReport
from gpu_worker.queue import redis_client
from gpu_worker.registry import Presence, drain_key
from gpu_worker.rows import ExportRows
from gpu_worker.store import open_store
from gpu_worker.tasks.context import WorkerServices
from gpu_worker.worker import build_worker
from tests.fixtures.app import (
    PASSWORD,
    csrf_headers,
    forget_queue,
    on_queue,
    queue_name,
    register,
    run_vexport,
)
from tests.media import make_video

DRAIN_SEEN_WITHIN_S = 3.0
OPERATOR_PATHS = [
    ("GET", "/api/workers"),
    ("POST", "/api/workers/{id}/drain"),
    ("GET", "/operators"),
    ("GET", "/operators/workers"),
    ("POST", "/operators/workers/{id}/drain"),
]


@pytest.fixture
async def farm_settings(settings: Settings, redis_url: str) -> AsyncIterator[Settings]:
    """The app's settings with a queue of its own, whose keys are removed afterwards."""
    name = queue_name("test-farm")
    yield on_queue(settings, name)
    redis = Redis.from_url(redis_url)
    await forget_queue(redis, name)
    await redis.aclose()


@pytest.fixture
async def browser(farm_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(farm_settings)) as c:
        yield c


@pytest.fixture
async def live_worker(farm_settings: Settings) -> AsyncIterator[Presence]:
    """A worker in the registry, heartbeating and listening for drain requests."""
    core = farm_settings.core
    worker = build_worker(core)
    services = WorkerServices(
        settings=core,
        worker_id=f"farm-test-{uuid.uuid4().hex[:8]}:1",
        store=open_store(core.storage),
        redis=redis_client(core.redis_url or ""),
        rows=ExportRows.connect(core.async_database_url),
        gpu_report=GpuReport(driver_present=False, reason="CPU-only worker (--encoder cpu)"),
    )
    presence = await Presence.start(services, worker, None)
    yield presence
    await presence.stop()
    await services.redis.aclose()
    await services.rows.aclose()
    await services.store.aclose()


async def grant_operator(settings: Settings, email: str, *flags: str) -> str:
    return await asyncio.to_thread(run_vexport, settings, "grant-operator", email, *flags)


async def export_as(c: AsyncTestClient[Any], email: str, video: Path) -> str:
    """Register `email`, upload `video` and request an export of it; the export's id."""
    await register(c, email)
    files = {"file": (video.name, video.read_bytes(), "video/mp4")}
    video_id = (await c.post("/api/videos", files=files, headers=await csrf_headers(c))).json()["id"]
    r = await c.post(f"/api/videos/{video_id}/export", json={}, headers=await csrf_headers(c))
    assert r.status_code == 202, r.text
    export_id: str = r.json()["id"]
    return export_id


def main_of(page: str) -> str:
    """A page's content: the `<main>` element (the header around it differs with who is logged in)."""
    return page[page.index("<main") : page.index("</main>")]


async def call(c: AsyncTestClient[Any], method: str, path: str) -> Any:
    return await c.request(method, path, headers=await csrf_headers(c), follow_redirects=False)


async def test_operator_endpoints_and_pages_answer_404_to_a_non_operator_like_a_missing_path(
    browser: AsyncTestClient[Any], live_worker: Presence, redis_url: str
) -> None:
    await register(browser, "editor@example.com")
    missing_api = await browser.get("/api/no-such-thing")
    missing_page = await browser.get("/no-such-page")

    for method, path in OPERATOR_PATHS:
        r = await call(browser, method, path.format(id=live_worker.info().id))
        assert r.status_code == 404, (method, path)
        if path.startswith("/api/"):
            assert (r.headers["content-type"], r.json()) == (
                missing_api.headers["content-type"],
                missing_api.json(),
            )
        else:
            assert (r.headers["content-type"], main_of(r.text)) == (
                missing_page.headers["content-type"],
                main_of(missing_page.text),
            )
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.exists(drain_key(live_worker.info().id)) == 0, "a refused drain asks nothing"
    finally:
        await redis.aclose()


async def test_anonymous_callers_are_asked_to_log_in_first(browser: AsyncTestClient[Any]) -> None:
    api = await browser.get("/api/workers")
    page = await browser.get("/operators", follow_redirects=False)

    assert api.status_code == 401
    assert (page.status_code, page.headers["location"]) == (302, "/login?next=/operators")


async def test_grant_operator_opens_the_workers_api_and_page_and_revoke_closes_them(
    browser: AsyncTestClient[Any], farm_settings: Settings
) -> None:
    await register(browser, "ops@example.com")
    assert (await browser.get("/api/workers")).status_code == 404

    assert await grant_operator(farm_settings, "OPS@example.com") == "ops@example.com is now an operator\n"
    api, page = await browser.get("/api/workers"), await browser.get("/operators")
    assert (api.status_code, page.status_code) == (200, 200)
    assert '<a href="/operators" aria-current="page">Operators</a>' in page.text

    assert await grant_operator(farm_settings, "ops@example.com", "--revoke") == (
        "ops@example.com is no longer an operator\n"
    )
    assert (await browser.get("/api/workers")).status_code == 404
    assert "Operators</a>" not in (await browser.get("/videos")).text


def test_grant_operator_names_an_account_that_does_not_exist(farm_settings: Settings) -> None:
    env = {
        "DATABASE_URL": farm_settings.core.database_url or "",
        "VEXPORT_DATA_DIR": str(farm_settings.core.data_dir),
    }

    result = CliRunner().invoke(vexport, ["grant-operator", "nobody@example.com"], env=env)

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: no account with the email nobody@example.com"


async def test_create_user_operator_gives_a_token_that_lists_the_live_workers(
    farm_settings: Settings, live_worker: Presence
) -> None:
    out = await asyncio.to_thread(
        run_vexport,
        farm_settings,
        "create-user",
        "boss@example.com",
        "--password",
        PASSWORD,
        "--operator",
        "--token",
        "ops",
    )
    created, token_line = out.splitlines()
    assert created == "created boss@example.com (operator)"
    token = token_line.removeprefix("API token (shown once): ")

    async with AsyncTestClient(app=create_app(farm_settings)) as script:
        r = await script.get("/api/workers", headers={"Authorization": f"Bearer {token}"})

    assert r.status_code == 200
    listed = {w["id"]: w for w in r.json()["items"]}
    expected = live_worker.info()
    mine = listed[expected.id]
    assert mine["pid"] == expected.pid
    assert (mine["kind"], mine["queues"], mine["draining"], mine["current"]) == (
        "cpu",
        [farm_settings.core.queue_name],
        False,
        [],
    )
    assert r.json()["now"] >= mine["last_seen"]


async def test_an_operator_drains_a_worker_through_the_api_and_the_registry_shows_it(
    browser: AsyncTestClient[Any], farm_settings: Settings, live_worker: Presence
) -> None:
    await register(browser, "ops@example.com")
    await grant_operator(farm_settings, "ops@example.com")
    worker_id = live_worker.info().id

    r = await call(browser, "POST", f"/api/workers/{worker_id}/drain")
    assert (r.status_code, r.json()["id"], r.json()["draining"]) == (202, worker_id, False)

    async def shown_draining() -> bool:
        items = (await browser.get("/api/workers")).json()["items"]
        return any(w["id"] == worker_id and w["draining"] for w in items)

    deadline = asyncio.get_running_loop().time() + DRAIN_SEEN_WITHIN_S
    while not await shown_draining():
        assert asyncio.get_running_loop().time() < deadline, "the registry never said draining"
        await asyncio.sleep(0.1)
    unknown = await call(browser, "POST", "/api/workers/nowhere:1/drain")
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no live worker nowhere:1")


async def test_the_operators_page_lists_the_worker_and_its_drain_button_asks_it_to_drain(
    browser: AsyncTestClient[Any], farm_settings: Settings, live_worker: Presence
) -> None:
    await register(browser, "ops@example.com")
    await grant_operator(farm_settings, "ops@example.com")
    worker_id = live_worker.info().id

    page = await browser.get("/operators")
    assert f'data-worker-id="{worker_id}"' in page.text
    assert f'hx-post="/operators/workers/{worker_id}/drain"' in page.text
    assert 'hx-get="/operators/workers" hx-trigger="every 2s"' in page.text

    htmx = await browser.post(
        f"/operators/workers/{worker_id}/drain", headers={**await csrf_headers(browser), "HX-Request": "true"}
    )
    assert htmx.status_code == 200
    assert f"Drain requested for <code>{worker_id}</code>." in htmx.text
    plain = await call(browser, "POST", f"/operators/workers/{worker_id}/drain")
    assert (plain.status_code, plain.headers["location"]) == (303, "/operators")


async def test_an_operator_lists_every_users_exports_and_anyone_else_gets_404_for_it(
    farm_settings: Settings, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, fps=10)
    async with (
        AsyncTestClient(create_app(farm_settings)) as alice,
        AsyncTestClient(create_app(farm_settings)) as ops,
    ):
        alice_export = await export_as(alice, "alice@example.com", clip.path)
        ops_export = await export_as(ops, "ops@example.com", clip.path)
        await grant_operator(farm_settings, "ops@example.com")

        everyone = await ops.get("/api/exports", params={"scope": "all", "limit": 100})
        own = await ops.get("/api/exports")
        refused = await alice.get("/api/exports", params={"scope": "all"})

    assert everyone.status_code == 200
    assert {alice_export, ops_export} <= {e["id"] for e in everyone.json()["items"]}
    assert [e["id"] for e in own.json()["items"]] == [ops_export]
    assert refused.status_code == 404


async def test_an_operators_list_says_whose_each_export_is_where_it_is_queued_and_who_renders_it(
    farm_settings: Settings, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, fps=10)
    core = farm_settings.core
    async with (
        AsyncTestClient(create_app(farm_settings)) as alice,
        AsyncTestClient(create_app(farm_settings)) as ops,
    ):
        waiting = await export_as(alice, "alice@example.com", clip.path)
        claimed = await export_as(ops, "ops@example.com", clip.path)
        alice_id = (await alice.get("/api/auth/me")).json()["id"]
        ops_id = (await ops.get("/api/auth/me")).json()["id"]
        await grant_operator(farm_settings, "ops@example.com")
        rows = ExportRows.connect(core.async_database_url)
        try:
            assert await rows.claim(uuid.UUID(claimed), "render-box:7", core.cpu_queue_name) is not None
        finally:
            await rows.aclose()

        listed = await ops.get("/api/exports", params={"scope": "all", "limit": 100})

    farm = {e["id"]: (e["user_id"], e["queue_name"], e["worker_id"]) for e in listed.json()["items"]}
    assert farm[waiting] == (alice_id, core.cpu_queue_name, None)
    assert farm[claimed] == (ops_id, core.cpu_queue_name, "render-box:7")
