"""Graceful drain: SIGTERM mid-render hands the export back, and another worker finishes it."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.e2e.conftest import Deploy
from tests.media import MadeVideo

pytestmark = pytest.mark.slow

DRAIN_WITHIN_S = 5.0
NO_GRACE = {"DRAIN_GRACE_S": "0"}
"""SIGTERM hands the running export straight back instead of letting it finish."""


async def test_sigterm_mid_render_hands_the_export_back_and_another_worker_completes_it(
    deploy: Deploy, long_source: MadeVideo
) -> None:
    app = await deploy()
    leaving = await app.start_worker(env=NO_GRACE)
    export_id = (
        await app.export(await app.upload(long_source), {"resolution": "source", "quality": "high"})
    )["id"]
    await app.rendering(export_id)

    asked = time.monotonic()
    leaving.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(leaving.proc.wait, DRAIN_WITHIN_S)
    assert code == 0
    assert time.monotonic() - asked < DRAIN_WITHIN_S
    handed_back = await app.get(export_id)
    assert (handed_back["status"], handed_back["attempt"]) == ("pending", 1)
    assert leaving.scratch_files() == []

    await app.start_worker()
    export = await app.finished(export_id)
    assert (export["status"], export["attempt"], export["progress"], export["error"]) == (
        "completed",
        2,
        100,
        None,
    )
    assert app.stored_export_keys() != []
