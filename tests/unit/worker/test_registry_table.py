"""`vexport workers`: the registry as a terminal table, one padded row per worker."""

from __future__ import annotations

import re

from backend.domain.farm.cli import workers_table
from gpu_worker.registry import CurrentExport, GpuSummary, WorkerInfo

L4 = GpuSummary(
    index=0, name="NVIDIA L4", driver="550.54", memory_mb=23034, nvenc_codecs=["h264"], nvdec_codecs=[]
)


def info(**fields: object) -> WorkerInfo:
    base: dict[str, object] = {
        "id": "gpu-box:41",
        "host": "gpu-box",
        "pid": 41,
        "version": "0.1.0",
        "started_at": 1000.0,
        "last_seen": 1098.0,
        "queues": ["exports-gpu"],
        "kind": "gpu",
        "gpu_index": 0,
        "gpus": [L4],
        "healthy": True,
        "breaker": {"state": "closed"},
        "current": [],
        "jobs_done": 12,
        "jobs_failed": 1,
        "draining": False,
        "concurrency": 2,
        "nvenc_sessions": 2,
    }
    return WorkerInfo(**{**base, **fields})  # type: ignore[arg-type]


def test_each_worker_is_a_row_under_the_header_with_its_gpu_health_and_current_exports() -> None:
    rendering = CurrentExport(export_id="e-1", attempt=2, percent=40, fps=88.46, started_at=1090.0)
    workers = [
        info(current=[rendering]),
        info(
            id="cpu-box:7",
            host="cpu-box",
            pid=7,
            kind="cpu",
            gpu_index=None,
            gpus=[],
            breaker=None,
            draining=True,
            last_seen=1100.0,
            jobs_done=0,
            jobs_failed=0,
        ),
        info(id="gpu-box:42", pid=42, healthy=False, breaker={"state": "open"}),
    ]

    rows = workers_table(workers, now=1100.0).splitlines()

    assert [re.split(" {2,}", row) for row in rows] == [
        ["ID", "HOST", "KIND", "GPU", "HEALTH", "CURRENT", "DONE/FAILED", "LAST SEEN", "DRAINING"],
        ["gpu-box:41", "gpu-box", "gpu", "0 NVIDIA L4", "ok", "e-1 #2 40% 88.5 fps", "12/1", "2s ago", "no"],
        ["cpu-box:7", "cpu-box", "cpu", "-", "ok", "-", "0/0", "0s ago", "yes"],
        ["gpu-box:42", "gpu-box", "gpu", "0 NVIDIA L4", "unhealthy (open)", "-", "12/1", "2s ago", "no"],
    ]
    assert {
        row.index(done) for row, done in zip(rows, ["DONE/FAILED", "12/1", "0/0", "12/1"], strict=True)
    } == {rows[0].index("DONE/FAILED")}, "columns are aligned"
