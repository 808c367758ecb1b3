"""`vexport serve` with no service URLs: embedded Postgres + Redis + local store, clean stop, data kept."""

from __future__ import annotations

import socket

import httpx
import psutil

from tests.fixtures.app import PASSWORD
from tests.integration.runtime.conftest import (
    STOP_TIMEOUT_S,
    Commands,
    processes_mentioning,
    stop,
    wait_ready,
)


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


def test_serve_starts_embedded_services_says_where_it_listens_stops_cleanly_and_keeps_data(
    vexport: Commands,
) -> None:
    base, proc = vexport.serve()
    startup_s = wait_ready(base, proc)
    print(f"embedded start-up to /ready: {startup_s:.2f} s")
    data = vexport.data
    assert (data / "postgres" / "PG_VERSION").exists()
    assert (data / "redis" / "redis.sock").exists()
    assert len(processes_mentioning(data)) >= 2  # postgres and redis-server are running for us

    assert send_credentials(base, "/api/auth/register") == 201
    assert '"POST /api/auth/register HTTP/1.1" 201' in vexport.log.read_text()  # access log

    assert stop(proc) == 0
    assert processes_mentioning(data) == []
    log = vexport.log.read_text()
    assert f"data dir {data}: a new embedded PostgreSQL and embedded Redis (started here)" in log
    assert f"Video Export is listening on {base} (Ctrl-C stops it)" in log
    assert "alembic.runtime.plugins" not in log  # no library chatter
    assert " WARNING " not in log  # a clean start and Ctrl-C warn about nothing

    base, proc = vexport.serve()
    wait_ready(base, proc)
    assert send_credentials(base, "/api/auth/login") == 200
    assert stop(proc) == 0
    assert processes_mentioning(data) == []


def test_serve_with_two_api_processes_answers_on_one_port_and_stops_both(vexport: Commands) -> None:
    vexport.seed()
    base, proc = vexport.serve("--processes", "2", "--no-worker", ACCESS_LOG="false")
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
    assert "GET /ready" not in vexport.log.read_text()  # ACCESS_LOG=false

    assert stop(proc) == 0
    assert not api[0].is_running()
    assert processes_mentioning(vexport.data) == []


def test_serve_refuses_a_port_another_server_listens_on_even_with_several_processes(
    vexport: Commands,
) -> None:
    with socket.socket() as other:  # as a running `serve --processes 2` holds it
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        _, proc = vexport.serve("--processes", "2", "--no-worker", port=taken)
        code = proc.wait(STOP_TIMEOUT_S)
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{taken}: Address already in use" in vexport.log.read_text()
    assert not (vexport.data / "postgres").exists()  # it failed before any embedded server started
