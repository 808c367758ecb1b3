"""Draining with a grace period: `vexport workers drain ID` and SIGTERM both let the running export
finish, take no new job meanwhile, show `draining` in the registry, and the process exits 0.
(tests/e2e/test_drain.py covers the other ending: no grace left, the export is handed back.)"""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from gpu_worker.registry import WorkerInfo, find_worker
from tests.e2e.conftest import (
    RENDER_TIMEOUT_S,
    Deploy,
    Deployment,
    WorkerProcess,
    eventually,
)
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

GRACE = {"DRAIN_GRACE_S": "60"}
DRAIN_SHOWN_WITHIN_S = 3.0
"""A drain request is seen within DRAIN_POLL_S (1 s) and the heartbeat says so at once."""
EXIT_WITHIN_S = 10.0
"""From the render's end to the process's exit: upload, the row, SAQ's finish, shutdown."""
RENDER = {"resolution": "source", "quality": "high"}
HOST = socket.gethostname()


async def draining(app: Deployment, worker: WorkerProcess) -> WorkerInfo:
    async def shown() -> WorkerInfo | None:
        info = await find_worker(app.redis, f"{HOST}:{worker.pid}")
        return info if info is not None and info.draining else None

    info: WorkerInfo = await eventually(
        shown, within_s=DRAIN_SHOWN_WITHIN_S, what="the registry to say draining"
    )
    return info


async def test_vexport_workers_drain_lets_the_running_export_finish_and_the_worker_exit_0(
    deploy: Deploy, long_source: MadeVideo, source: MadeVideo
) -> None:
    app = await deploy()
    worker = await app.start_worker("--encoder", "cpu", env=GRACE)
    waiting_video = await app.upload(source)
    export_id = (await app.export(await app.upload(long_source), RENDER))["id"]
    await app.rendering(export_id)
    worker_id = f"{HOST}:{worker.pid}"

    drain = asyncio.create_task(asyncio.to_thread(app.vexport, "workers", "drain", worker_id, "--wait"))
    info = await draining(app, worker)
    assert [(c.export_id, c.attempt) for c in info.current] == [(export_id, 1)]
    queued_meanwhile = (await app.export(waiting_video, {"resolution": "360p"}))["id"]

    result = await asyncio.wait_for(drain, RENDER_TIMEOUT_S)
    assert (result.exit_code, result.stdout) == (0, f"drain requested: {worker_id}\nstopped: {worker_id}\n")
    assert await asyncio.to_thread(worker.proc.wait, EXIT_WITHIN_S) == 0
    export = await app.get(export_id)
    assert (export["status"], export["attempt"], export["progress"]) == ("completed", 1, 100)
    untouched = await app.get(queued_meanwhile)
    assert (untouched["status"], untouched["attempt"]) == ("pending", 0)


async def test_sigterm_lets_the_running_export_finish_within_the_grace_period_and_the_worker_exit_0(
    deploy: Deploy, long_source: MadeVideo
) -> None:
    app = await deploy()
    worker = await app.start_worker("--encoder", "cpu", env=GRACE)
    export_id = (await app.export(await app.upload(long_source), RENDER))["id"]
    await app.rendering(export_id)

    worker.proc.send_signal(signal.SIGTERM)
    await draining(app, worker)

    code = await asyncio.to_thread(worker.proc.wait, RENDER_TIMEOUT_S)
    assert code == 0, worker.log_text()[-3000:]
    export = await app.get(export_id)
    assert (export["status"], export["attempt"], export["progress"]) == ("completed", 1, 100)
    assert await find_worker(app.redis, f"{HOST}:{worker.pid}") is None, "a clean exit leaves the registry"
    assert worker.scratch_files() == []


async def test_draining_a_worker_that_is_not_live_fails_naming_it(deploy: Deploy) -> None:
    app = await deploy()

    result = await asyncio.to_thread(app.vexport, "workers", "drain", "nowhere:1")

    assert (result.exit_code, result.stderr) == (
        1,
        "Error: no live worker nowhere:1 (see `vexport workers`)\n",
    )
