"""`vexport serve` with no service URLs: embedded Postgres + Redis + local store, clean stop, data kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.app import PASSWORD
from tests.fixtures.live import free_port

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30


def processes_mentioning(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(path) in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT_S:
        assert proc.poll() is None, f"vexport serve exited with {proc.returncode}"
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready after {START_TIMEOUT_S} s")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "S3_"))}
    env.pop("SECRET_KEY", None)
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, port: int | None = None, **extra_env: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--port", str(port), *args],
            cwd=tmp_path,
            env={**env, **extra_env, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
            stdout=(tmp_path / "serve.log").open("ab"),  # uvicorn's text access log goes to stdout
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return f"http://127.0.0.1:{port}", proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def send_credentials(base: str, path: str) -> int:
    """POST the test account's credentials the way a browser does (CSRF cookie echoed in the header)."""
    with httpx.Client(base_url=base) as c:
        c.get("/login")
        r = c.post(
            path,
            json={"email": "first@example.com", "password": PASSWORD},
            headers={"x-csrftoken": c.cookies["csrftoken"]},
        )
        return r.status_code


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(STOP_TIMEOUT_S)


def test_serve_starts_embedded_services_stops_cleanly_and_keeps_data(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, proc = serve()
    startup_s = wait_ready(base, proc)
    print(f"embedded start-up to /ready: {startup_s:.2f} s")
    data = tmp_path / ".data"
    assert (data / "postgres" / "PG_VERSION").exists()
    assert (data / "redis" / "redis.sock").exists()
    assert len(processes_mentioning(data)) >= 2  # postgres and redis-server are running for us

    assert send_credentials(base, "/api/auth/register") == 201
    assert '"POST /api/auth/register HTTP/1.1" 201' in (tmp_path / "serve.log").read_text()  # access log

    assert stop(proc) == 0
    assert processes_mentioning(data) == []

    base, proc = serve()
    wait_ready(base, proc)
    assert send_credentials(base, "/api/auth/login") == 200
    assert stop(proc) == 0
    assert processes_mentioning(data) == []


def test_serve_with_two_api_processes_answers_on_one_port_and_stops_both(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, proc = serve("--processes", "2", "--no-worker", ACCESS_LOG="false")
    wait_ready(base, proc)
    api = [
        p for p in psutil.Process(proc.pid).children() if p.cmdline() == psutil.Process(proc.pid).cmdline()
    ]
    assert len(api) == 1  # the second API process, forked by serve
    clients = [httpx.Client(base_url=base, timeout=5) for _ in range(20)]  # 20 keep-alive connections
    try:
        assert all(c.get("/ready").status_code == 200 for c in clients)
        port = int(base.rpartition(":")[2])
        held = [
            len([c for c in p.net_connections() if c.laddr.port == port and c.status == "ESTABLISHED"])
            for p in (psutil.Process(proc.pid), api[0])
        ]
    finally:
        for c in clients:
            c.close()
    assert sum(held) == 20
    assert min(held) > 0  # the kernel spread them over both processes (SO_REUSEPORT)
    assert "GET /ready" not in (tmp_path / "serve.log").read_text()  # ACCESS_LOG=false

    assert stop(proc) == 0
    assert not api[0].is_running()
    assert processes_mentioning(tmp_path / ".data") == []


def test_serve_refuses_a_port_another_server_listens_on_even_with_several_processes(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as other:  # as a running `serve --processes 2` holds it
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        _, proc = serve("--processes", "2", "--no-worker", port=taken)
        code = proc.wait(STOP_TIMEOUT_S)
    assert code == 1
    assert (
        f"cannot listen on 127.0.0.1:{taken}: Address already in use" in (tmp_path / "serve.log").read_text()
    )
    assert not (tmp_path / ".data" / "postgres").exists()  # it failed before any embedded server started
