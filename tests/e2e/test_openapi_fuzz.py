"""Schemathesis against the running API: the OpenAPI document at /schema/openapi.json is true.

For every operation, the multipart upload `POST /api/videos` included: no 5xx whatever the input
(`not_a_server_error`), every status is one the operation documents (`status_code_conformance`), in a
media type it documents (`content_type_conformance`), with a body that matches its schema
(`response_schema_conformance`): problem+json errors included. Left out: the websocket routes (not
in the OpenAPI document).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Deploy

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 170
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_schemathesis_finds_no_server_error_and_no_undocumented_response_shape(
    deploy: Deploy, tmp_path: Path
) -> None:
    app = await deploy()
    schemathesis = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(schemathesis),
        "run",
        f"http://{app.address}/schema/openapi.json",
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Bearer {app.owner.token}",
        # Not the stateful phase: chaining operations (register, revoke, delete, ...) doubles the
        # run time for what the integration tests already cover call by call.
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "20",
        "--seed",
        "1",
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
