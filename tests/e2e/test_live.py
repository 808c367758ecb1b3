"""What a user watches while a worker process renders: the progress websocket, and cancelling."""

from __future__ import annotations

import time

import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import Deploy, eventually
from tests.fixtures.live import recv, rest_until_closed
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

WHOLE_AT_SOURCE_SIZE = {"resolution": "source", "quality": "high"}
"""The whole 20 s long source at 640x360: about four seconds of rendering."""
DELETE_WITHIN_S = 2.0
STOP_WITHIN_S = 2.0


async def test_the_websocket_streams_a_real_render_from_snapshot_to_completed_then_closes(
    deploy: Deploy, long_source: MadeVideo
) -> None:
    app = await deploy()
    await app.start_worker()
    video_id = await app.upload(long_source)

    export_id = (await app.export(video_id, WHOLE_AT_SOURCE_SIZE))["id"]
    async with connect(app.ws_url(export_id)) as ws:
        messages, code = await rest_until_closed(ws)

    snapshot, updates = messages[0], messages[1:]
    assert snapshot["export_id"] == export_id
    assert snapshot["status"] in {"pending", "processing"}
    assert code == 1000
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs)), f"seq not strictly increasing: {seqs}"
    percents = [m["percent"] for m in messages]
    assert percents == sorted(percents), f"percent went backwards: {percents}"
    rendering = [m for m in updates if m["phase"] == "rendering" and m["frames_done"] > 0]
    assert len(rendering) >= 2, "a four-second render shows several live updates"
    assert all(m["frames_total"] == 500 for m in rendering)
    final = messages[-1]
    assert {k: final[k] for k in ("status", "percent", "encoder_used", "fallback_reason", "attempt")} == {
        "status": "completed",
        "percent": 100,
        "encoder_used": "libx264",
        "fallback_reason": "no healthy GPU worker with NVENC H.264 is online",
        "attempt": 1,
    }
    assert [m["status"] for m in messages].count("completed") == 1

    async with connect(app.ws_url(export_id)) as late:
        replay, late_code = await rest_until_closed(late)
    assert [(m["status"], m["percent"], m["attempt"]) for m in replay] == [("completed", 100, 1)]
    assert late_code == 1000


async def test_deleting_a_rendering_export_stops_the_worker_and_leaves_nothing_behind(
    deploy: Deploy, long_source: MadeVideo
) -> None:
    app = await deploy()
    worker = await app.start_worker()
    video_id = await app.upload(long_source)
    export_id = (await app.export(video_id, WHOLE_AT_SOURCE_SIZE))["id"]

    async with connect(app.ws_url(export_id)) as ws:
        while not ((m := await recv(ws))["phase"] == "rendering" and m["frames_done"] > 0):
            pass
        assert worker.scratch_files() != [], "the render writes its output in the worker's scratch dir"

        asked = time.monotonic()
        r = await app.api.delete(f"/api/exports/{export_id}")
        answered = time.monotonic() - asked
        assert r.status_code == 204, r.text
        assert answered < DELETE_WITHIN_S
        after_cancel, code = await rest_until_closed(ws)

    assert [m["status"] for m in after_cancel][-1:] == ["cancelled"]
    assert code == 1000

    async def scratch_emptied() -> bool:
        return worker.scratch_files() == [] and not any(worker.scratch.iterdir())

    await eventually(scratch_emptied, within_s=STOP_WITHIN_S, what="the worker to stop and clean up")
    stopped_after = time.monotonic() - asked
    assert stopped_after < STOP_WITHIN_S + DELETE_WITHIN_S
    assert (await app.api.get(f"/api/exports/{export_id}")).status_code == 404
    assert app.stored_export_keys() == []
    assert worker.alive()
    assert f"export {export_id} attempt 1 stopped: cancelled or taken over" in worker.log_text()
    assert f"export {export_id} attempt 1 completed" not in worker.log_text()
