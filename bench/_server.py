"""Shared by the API and websocket benchmarks: a real `vexport serve --no-worker` on loopback.

`bench_server()` starts the server as a subprocess on a free 127.0.0.1 port, with DATABASE_URL and
REDIS_URL from the environment when set (else the embedded servers, in a temporary
VEXPORT_DATA_DIR), waits for `/ready`, registers a user through the API (CSRF double-submit),
issues an API token, uploads a tiny generated clip, and always stops the server at the end
(SIGINT, a second SIGINT, then SIGKILL to its process group after deadlines).
The worker is off, so exports stay pending; the per-user limits are raised for the benchmark, and
its jobs go to a queue of its own, removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0
FORCE_GRACE_S = 10.0
BIG_LIMIT = str(10**9)
LOAD_NOTE = (
    "the load generator runs on the same machine as the server (and its Postgres/Redis), "
    "sharing its {cpus} CPU core(s); client CPU time is part of every latency measured here"
)


@dataclass(frozen=True, slots=True)
class BenchServer:
    """A running server and what a benchmark needs to talk to it."""

    pid: int
    base_url: str
    ws_url: str
    redis_url: str
    token: str
    user_id: str
    video_id: str
    embedded: bool
    log_path: Path


def environment(loadavg_start: tuple[float, float, float]) -> dict[str, object]:
    """Machine facts for the report, the load average at start and now included."""
    cpus = os.cpu_count() or 1
    return {
        "cpus": cpus,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "loadavg_start": [round(x, 2) for x in loadavg_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "note": LOAD_NOTE.format(cpus=cpus),
    }


def write_json(path: Path, benchmark: str, quick: bool, config: dict[str, object], **results: object) -> None:
    """The machine-readable report: which benchmark, its configuration, then its results."""
    document = {"benchmark": benchmark, "quick": quick, "config": config, **results}
    path.write_text(json.dumps(document, indent=2) + "\n")


def raise_nofile(wanted: int) -> int:
    """Lift the soft open-file limit towards `wanted` (at most the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_clip(path: Path, seconds: int = 1, fps: int = 10) -> Path:
    """A tiny H.264 mp4 (160x90, no audio): enough for the API to probe and accept."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            image = np.full((90, 160, 3), (i * 20) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/ready").status_code == 200:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _provision(base_url: str, clip: Path) -> tuple[str, str, str]:
    """Register a user (cookie session, CSRF), issue a token, upload the clip: (token, user id, video id)."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        client.get("/login").raise_for_status()
        csrf = {"x-csrftoken": client.cookies["csrftoken"]}
        user = client.post(
            "/api/auth/register", json={"email": email, "password": "bench-password-1"}, headers=csrf
        )
        user.raise_for_status()
        token = client.post("/api/tokens", json={"name": "bench"}, headers=csrf)
        token.raise_for_status()
    value = str(token.json()["token"])
    with httpx.Client(base_url=base_url, timeout=60.0) as client, clip.open("rb") as body:
        video = client.post(
            "/api/videos",
            files={"file": ("bench.mp4", body, "video/mp4")},
            headers={"authorization": f"Bearer {value}"},
        )
        video.raise_for_status()
    status = video.json()["status"]
    if status != "ready":
        raise RuntimeError(f"uploaded clip is {status!r}, not ready: {video.text[:500]}")
    return value, str(user.json()["id"]), str(video.json()["id"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (graceful), SIGINT again (uvicorn's forced exit), then SIGKILL to the process group."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGINT, FORCE_GRACE_S)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    if process.poll() is None:
        print("server did not stop in time; killing its process group", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextlib.contextmanager
def bench_server(
    extra_env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[BenchServer]:
    """Start a provisioned server for the duration of the block; see the module docstring."""
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="vexport-bench-"))
    scratch.chmod(0o755)  # the embedded Postgres runs as its own system user when we are root
    data_dir = scratch / "data"
    embedded_redis = not os.environ.get("REDIS_URL")
    redis_url = os.environ.get("REDIS_URL") or f"unix://{data_dir / 'redis' / 'redis.sock'}"
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "VEXPORT_DATA_DIR": str(data_dir),
        "QUEUE_NAME": queue,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "RUN_WORKER": "false",
        "MAX_ACTIVE_EXPORTS": BIG_LIMIT,
        "EXPORT_REQUESTS_PER_MINUTE": BIG_LIMIT,
        **(extra_env or {}),
    }
    base_url = f"http://127.0.0.1:{port}"
    log_path = OUT / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--no-worker", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the bench reaches only us; we stop the server ourselves
        )
    try:
        _wait_ready(process, base_url, log_path)
        token, user_id, video_id = _provision(base_url, make_clip(scratch / "clip.mp4"))
        yield BenchServer(
            pid=process.pid,
            base_url=base_url,
            ws_url=f"ws://127.0.0.1:{port}",
            redis_url=redis_url,
            token=token,
            user_id=user_id,
            video_id=video_id,
            embedded=embedded_redis,
            log_path=log_path,
        )
    finally:
        _stop(process)
        if not embedded_redis:
            _forget_queue(redis_url, queue)
        shutil.rmtree(scratch, ignore_errors=True)


def _forget_queue(redis_url: str, queue: str) -> None:
    """Remove the jobs the benchmark enqueued (no worker ran) from a Redis that outlives it."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"saq:*{queue}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def process_stats(pid: int) -> dict[str, int]:
    """Open file descriptors and resident memory (KiB) of a local process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return {"fds": fds, "rss_kib": rss}


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a local process (this one when None), from /proc; for the server,
    its other API processes (`serve --processes`) count too, its embedded Postgres/Redis do not."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    return sum(_own_cpu_seconds(p) for p in [pid, *_api_children(pid)])


def _own_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _api_children(pid: int) -> list[int]:
    """The forked API processes of server `pid`: its children running the same command line."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if parent == pid and (entry / "cmdline").read_bytes() == command:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending sequence; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without floats
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table like bench/render.py's: first column left, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [row(header, widths), row(["-" * w for w in widths], widths)]
    return "\n".join(lines + [row(r, widths) for r in rows])
