"""Browser tests: the real pages in headless Chromium (Debian's `chromium`, driven by Playwright's async
API through `executable_path`) against a live deployment: the app on the test Postgres and Redis with a
local store, served by uvicorn on the test's event loop, and one `vexport worker` OS process.

The deployment lives for the whole session (starting a worker costs seconds); each test gets a fresh
browser context and signs up a fresh user, and the tables are emptied after each test once the worker
is idle. Waits are Playwright's auto-waiting `expect`s and `until` (waits.py), never fixed sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    async_playwright,
    expect,
)
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.store import StoreSettings
from tests.browser.waits import until
from tests.e2e.conftest import WORKER_READY_TIMEOUT_S, WorkerProcess, eventually, worker_env
from tests.fixtures.app import PASSWORD, forget_queue, make_settings
from tests.fixtures.live import serve_app
from tests.media import MadeVideo, make_video

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "install-browser.sh"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
INSTALL_TIMEOUT_S = 600
TEST_TIMEOUT_S = 300
"""pyproject's pytest-timeout for one test."""
UI_TIMEOUT_MS = 15_000
"""Longest wait for anything on a page that needs no render (Playwright's default is 30 s)."""
RENDER_TIMEOUT_MS = 90_000
"""Longest wait for a render to finish, seen in the page."""
IDLE_TIMEOUT_S = 30.0
SECRET_KEY = "browser-secret-key-" + "x" * 32

expect.set_options(timeout=UI_TIMEOUT_MS)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _chromium_path() -> Path:
    return Path(os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without Chromium, the first browser test's set-up installs it, and pytest-timeout counts
    set-up: give the browser tests the time an apt-get install may take on top of their own."""
    if _executable(_chromium_path()):
        return
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(INSTALL_TIMEOUT_S + TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's chromium: $CHROMIUM_PATH or /usr/bin/chromium, installed once with apt-get
    (scripts/install-browser.sh) when missing; the browser tests skip, loudly, only when that is
    impossible here (not root, no apt-get, no network)."""
    path = _chromium_path()
    if _executable(path):
        return path
    run = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        env={**os.environ, "CHROMIUM_PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if run.returncode != 0 or not _executable(path):
        pytest.skip(
            f"BROWSER TESTS NOT RUN: no Chromium at {path} and scripts/install-browser.sh could not "
            f"install it (exit {run.returncode}): {(run.stderr or run.stdout).strip()[-600:]}"
        )
    return path


@pytest.fixture(scope="session")
async def browser(chromium_executable: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium_executable), headless=True)
        yield launched
        await launched.close()


@dataclass
class LiveService:
    """The deployment the browser talks to: the API at `base_url` and one render worker process."""

    settings: Settings
    base_url: str
    redis: Redis
    worker: WorkerProcess

    @property
    def queue_name(self) -> str:
        return self.settings.core.queue_name

    @property
    def address(self) -> str:
        return self.base_url.removeprefix("http://")

    @contextmanager
    def worker_paused(self) -> Iterator[None]:
        """Freeze the worker process (SIGSTOP) for the block: it takes no job and its render, if any,
        stands still, so a test can look at an export in a state that would otherwise pass too fast."""
        os.kill(self.worker.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.worker.pid, signal.SIGCONT)

    async def idle(self) -> None:
        """Wait until the worker has no job queued or running (before the tables are emptied)."""

        async def empty() -> bool:
            assert self.worker.alive(), f"worker exited:\n{self.worker.log_text()[-4000:]}"
            queued = await self.redis.llen(f"saq:{self.queue_name}:queued")
            active = await self.redis.llen(f"saq:{self.queue_name}:active")
            return queued == 0 and active == 0

        await eventually(empty, within_s=IDLE_TIMEOUT_S, what="the worker to be idle")


async def _start_worker(settings: Settings, home: Path, redis: Redis) -> WorkerProcess:
    """`vexport worker`, ready once its start-up ran and its first sweep of the queue is done (as in
    tests/e2e: a job queued from then on is never swept as 'not active' while it is dequeued)."""
    scratch = home / "scratch"
    home.mkdir(parents=True)
    log = home / "worker.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait below is async
            [sys.executable, "-m", "backend", "worker"],
            cwd=home,
            env=worker_env(settings, home / "data", scratch),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    worker = WorkerProcess(proc, scratch, log)
    queue = settings.core.queue_name

    async def ready() -> bool:
        assert worker.alive(), f"worker exited with {proc.returncode}:\n{worker.log_text()}"
        started = f"started on queue {queue}" in worker.log_text()
        return started and bool(await redis.exists(f"saq:{queue}:sweep"))

    await eventually(ready, within_s=WORKER_READY_TIMEOUT_S, what="the worker to start")
    return worker


@pytest.fixture(scope="session")
async def live_service(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str
) -> AsyncIterator[LiveService]:
    root = tmp_path_factory.mktemp("browser-deployment")
    storage = StoreSettings(backend="local", local_root=root / "storage", signing_secret=SECRET_KEY)
    made = make_settings(root, database_url, redis_url, storage)
    core = dataclasses.replace(
        made.core, secret_key=SECRET_KEY, queue_name=f"browser-{uuid.uuid4().hex[:12]}"
    )
    settings = dataclasses.replace(made, core=core)
    async with AsyncExitStack() as stack:
        redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        address = await stack.enter_async_context(serve_app(create_app(settings)))
        worker = await _start_worker(settings, root / "worker", redis)
        stack.callback(worker.stop)
        yield LiveService(settings, f"http://{address}", redis, worker)
        await forget_queue(redis, core.queue_name)


@pytest.fixture
async def service(live_service: LiveService, db_engine: AsyncEngine) -> AsyncIterator[LiveService]:
    """The session's deployment for one test; its rows go (db_engine) once the worker is idle."""
    yield live_service
    await live_service.idle()


async def _new_page(browser: Browser, service: LiveService, **options: object) -> AsyncIterator[Page]:
    context: BrowserContext = await browser.new_context(
        base_url=service.base_url, accept_downloads=True, **options
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    blocked: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # Chromium reports what the Content-Security-Policy blocked as console errors.
        if "Content Security Policy" in message.text:
            blocked.append(message.text)

    page.on("console", on_console)
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert blocked == [], f"Content-Security-Policy violations on the page: {blocked}"


@pytest.fixture
async def page(browser: Browser, service: LiveService) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) at desktop size; uncaught JavaScript errors and
    Content-Security-Policy violations fail the test."""
    async for opened in _new_page(browser, service, viewport={"width": 1280, "height": 900}):
        yield opened


@pytest.fixture
async def phone_page(browser: Browser, service: LiveService) -> AsyncIterator[Page]:
    """A fresh browser context at a phone's width (375 CSS pixels), touch and all."""
    async for opened in _new_page(
        browser, service, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True
    ):
        yield opened


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """4 s, 25 fps, 320x240 H.264 + AAC: 100 frames, each carrying its index."""
    return make_video(
        tmp_path_factory.mktemp("browser-media") / "beach walk.mp4", seconds=4, fps=25, width=320, height=240
    )


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """20 s, 25 fps, 640x360: seconds of CPU render at source size and high quality, so a test can
    catch the export while it renders."""
    return make_video(
        tmp_path_factory.mktemp("browser-media") / "long take.mp4", seconds=20, fps=25, width=640, height=360
    )


def unique_email() -> str:
    return f"editor-{uuid.uuid4().hex[:10]}@example.com"


async def sign_up(page: Page) -> str:
    """Create a fresh account through the sign-up form, which logs the browser in; its email."""
    email = unique_email()
    await page.goto("/signup")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page).to_have_url(re.compile(r"/videos$"))
    return email


async def upload(page: Page, video: MadeVideo) -> str:
    """Upload through the videos page; the new video's id once its row shows it ready."""
    await page.goto("/videos")
    await page.get_by_label("Video file").set_input_files(video.path)
    await page.get_by_role("button", name="Upload").click()
    link = page.get_by_role("link", name=video.path.name, exact=True)
    row = page.locator("tr[id^='video-']").filter(has=link)
    await expect(row).to_contain_text(re.compile("ready", re.IGNORECASE))
    row_id = await row.get_attribute("id")
    assert row_id is not None
    return row_id.removeprefix("video-")


async def seek(page: Page, seconds: float) -> None:
    """Move the player to `seconds` and wait for its 'seeked' event (metadata first if needed)."""
    await page.evaluate(
        """async (t) => {
            const v = document.getElementById('player');
            if (v.readyState < 1) {
                await new Promise((done) => v.addEventListener('loadedmetadata', done, {once: true}));
            }
            await new Promise((done) => {
                v.addEventListener('seeked', done, {once: true});
                v.currentTime = t;
            });
        }""",
        seconds,
    )


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """A PNG under test-output/screenshots/ (gitignored), for people to look at, once the images in
    view have loaded; a modal is shot at the viewport only (its backdrop covers only the viewport)."""
    await until(
        page,
        "[...document.images].filter((i) => i.getBoundingClientRect().top < innerHeight)"
        ".every((i) => i.complete)",
        timeout_ms=UI_TIMEOUT_MS,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, full_page=full_page)
    return path


async def mark_segment(page: Page, start: float, end: float, *, keyboard: bool = False) -> None:
    """Mark [start, end) in the segment editor at the player's time: with the "Mark in" / "Mark out"
    buttons, or with the I and O keys."""
    for at, button, key in ((start, "Mark in", "i"), (end, "Mark out", "o")):
        await seek(page, at)
        if keyboard:
            await page.keyboard.press(key)
        else:
            await page.get_by_role("button", name=button, exact=True).click()


async def segments(page: Page) -> list[tuple[Fraction, Fraction]]:
    """The cut list the export form would send (#segments-field), as exact fractions of seconds."""
    raw = await page.locator("#segments-field").input_value()
    return [(Fraction(s["start"]), Fraction(s["end"])) for s in json.loads(raw or "[]")]


async def open_export_dialog(page: Page) -> Locator:
    await page.get_by_role("button", name="Export…").click()
    dialog = page.locator("#export-dialog")
    await expect(dialog).to_be_visible()
    return dialog


async def choose_export(
    dialog: Locator, *, mode: str, resolution: str = "source", quality: str = "draft", encoder: str = "CPU"
) -> None:
    """Fill the export form: `mode` is the Output radio's label, `encoder` the Encoder option's label."""
    await dialog.get_by_label("Resolution").select_option(resolution)
    await dialog.get_by_label("Quality").select_option(quality)
    await dialog.get_by_label("Format").select_option("mp4")
    await dialog.get_by_label("Codec").select_option("h264")
    await dialog.get_by_label(mode, exact=True).check()
    await dialog.get_by_label("Encoder").select_option(label=encoder)


async def start_export(dialog: Locator) -> Locator:
    """Submit the export form; the new export's card, prepended to the video page's exports."""
    page = dialog.page
    before = await page.locator("#exports article.export").count()
    await dialog.get_by_role("button", name="Start export").click()
    await expect(dialog).to_be_hidden()
    cards = page.locator("#exports article.export")
    await expect(cards).to_have_count(before + 1)
    card_id = await cards.first.get_attribute("id")
    assert card_id is not None
    assert card_id.startswith("export-"), card_id
    return page.locator(f"#{card_id}")


def export_id(card_id: str) -> str:
    return card_id.removeprefix("export-")


async def wait_rendering(card: Locator) -> None:
    """Until the card shows the export processing with some progress (fed by the websocket)."""
    await until(
        card.page,
        """(id) => {
            const card = document.getElementById(id);
            const bar = card && card.querySelector('[role=progressbar]');
            return card && card.dataset.status === 'processing'
                && Number(bar.getAttribute('aria-valuenow')) > 0;
        }""",
        await card.get_attribute("id"),
        timeout_ms=RENDER_TIMEOUT_MS,
    )


async def csrf(page: Page) -> dict[str, str]:
    """The double-submit CSRF header for API calls made with the page's session cookie."""
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    return {"X-CSRFToken": cookies["csrftoken"]}


async def api_json(page: Page, method: str, url: str, body: object = None, status: int = 200) -> Any:
    """An API call as the page's user (session cookie + CSRF), for set-up a test does not look at."""
    response = await page.request.fetch(url, method=method, data=body, headers=await csrf(page))
    assert response.status == status, f"{method} {url}: {response.status} {await response.text()}"
    return await response.json() if status != 204 else None
