"""Metrics and JSON logs of a real `vexport worker` process rendering a real export on the CPU."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import Deploy, Deployment, WorkerProcess, eventually
from tests.fixtures.live import free_port
from tests.media import MadeVideo
from tests.prom import Samples, parse, value

pytestmark = pytest.mark.slow

BODY = {"resolution": "360p", "segments": [{"start": "0.4", "end": "1.2"}]}
"""20 frames of the 3 s source; `auto`, which a CPU-only worker renders on the CPU."""


async def start_cpu_worker(app: Deployment, *extra: str) -> tuple[WorkerProcess, str]:
    """A CPU worker serving /metrics on a free port; the worker and its metrics URL."""
    port = free_port()
    worker = await app.start_worker("--encoder", "cpu", "--metrics-port", str(port), *extra)
    return worker, f"http://127.0.0.1:{port}"


async def scrape(url: str, **headers: str) -> Samples:
    async with httpx.AsyncClient() as client:
        r = await client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return parse(r.text)


async def test_a_completed_export_moves_the_api_and_worker_metrics(
    deploy: Deploy, source: MadeVideo, db_engine: AsyncEngine
) -> None:
    app = await deploy()
    async with db_engine.begin() as conn:
        operator = text("UPDATE users SET is_operator = true WHERE id = :id")
        await conn.execute(operator, {"id": app.owner.user_id})
    worker, worker_url = await start_cpu_worker(app)
    api_url, bearer = f"http://{app.address}/metrics", f"Bearer {app.owner.token}"
    api_before = await scrape(api_url, Authorization=bearer)
    before = await scrape(f"{worker_url}/metrics")

    export = await app.finished((await app.export(await app.upload(source), BODY))["id"])
    assert (export["status"], export["encoder_used"]) == ("completed", "libx264")

    async def counted() -> Samples | None:
        samples = await scrape(f"{worker_url}/metrics")
        return samples if value(samples, "vexport_exports_finished_total", outcome="completed") == 1 else None

    after = await eventually(counted, within_s=10, what="the worker to count the finished job")
    api_after = await scrape(api_url, Authorization=bearer)
    assert (
        value(api_before, "vexport_exports", status="completed"),
        value(api_after, "vexport_exports", status="completed"),
    ) == (0, 1)
    deltas = {
        (name, tuple(sorted(labels.items()))): value(after, name, **labels) - value(before, name, **labels)
        for name, labels in (
            ("vexport_render_seconds_count", {"kind": "cpu", "mode": "single"}),
            ("vexport_render_average_fps_count", {"kind": "cpu"}),
            ("vexport_encoder_used_total", {"kind": "cpu", "encoder": "libx264"}),
            ("vexport_fallbacks_total", {"reason": "routed_cpu"}),
            ("vexport_exports_finished_total", {"outcome": "completed"}),
        )
    }
    assert set(deltas.values()) == {1}, deltas
    assert value(after, "vexport_render_seconds_sum", kind="cpu", mode="single") > 0
    assert value(after, "vexport_render_fps") == 0  # nothing renders any more
    wid = f"{socket.gethostname()}:{worker.pid}"
    info = {"worker_id": wid, "queue": app.queue_name, "kind": "cpu", "gpu": ""}
    assert value(after, "vexport_worker_info", **info) == 1


async def test_the_worker_health_endpoint_answers_once_it_started(deploy: Deploy) -> None:
    app = await deploy()
    _, worker_url = await start_cpu_worker(app)
    async with httpx.AsyncClient(base_url=worker_url) as client:
        health, missing = await client.get("/health"), await client.get("/nope")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert missing.status_code == 404


async def test_json_log_lines_of_a_job_carry_its_export_worker_and_attempt(
    deploy: Deploy, source: MadeVideo
) -> None:
    app = await deploy()
    worker, _ = await start_cpu_worker(app, "--log-format", "json")
    export_id = (await app.export(await app.upload(source), BODY))["id"]
    assert (await app.finished(export_id))["status"] == "completed"

    lines = [json.loads(line) for line in worker.log_text().splitlines() if line.startswith("{")]
    job_lines = [line for line in lines if line.get("export_id") == export_id]
    wid = f"{socket.gethostname()}:{worker.pid}"

    def line_saying(start: str) -> dict[str, Any]:
        (found,) = [line for line in job_lines if line["msg"].startswith(start)]
        return {k: found.get(k) for k in ("level", "logger", "export_id", "worker_id", "attempt")}

    assert line_saying(f"export {export_id}: attempt 1 claimed") == {
        "level": "INFO",
        "logger": "gpu_worker.tasks.export",
        "export_id": export_id,
        "worker_id": wid,
        "attempt": 1,
    }
    assert line_saying(f"export {export_id} attempt 1 completed") == {
        "level": "INFO",
        "logger": "gpu_worker.tasks.export",
        "export_id": export_id,
        "worker_id": wid,
        "attempt": 1,
    }
    assert {line["worker_id"] for line in job_lines} == {wid}
