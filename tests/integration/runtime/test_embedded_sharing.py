"""Every command run against a data dir shares the embedded servers already running there; `serve`
keeps them alive, and what a crash leaves behind is cleaned up by the next start."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.fixtures.app import PASSWORD
from tests.integration.runtime.conftest import (
    Commands,
    Running,
    postmaster,
    processes_mentioning,
    redis_servers,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.slow
RECOVER_S = 30


def login(base: str, email: str, password: str) -> int:
    with httpx.Client(base_url=base) as c:
        c.get("/login")
        r = c.post(
            "/api/auth/login",
            json={"email": email, "password": password},
            headers={"x-csrftoken": c.cookies["csrftoken"]},
        )
        return r.status_code


def ready_within(base: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def test_create_user_beside_serve_shares_its_servers_and_the_account_logs_in(running: Running) -> None:
    vexport, base = running.vexport, running.base
    redis_before = [p.pid for p in redis_servers(vexport.data)]

    done = vexport.run("create-user", "beside@example.com", "--password", PASSWORD)

    assert done.returncode == 0, done.stderr
    assert f"data dir {vexport.data}: embedded PostgreSQL and embedded Redis (shared" in done.stderr
    assert [p.pid for p in redis_servers(vexport.data)] == redis_before  # no second redis-server
    assert httpx.get(f"{base}/ready", timeout=5).json()["checks"]["redis"] == "ok"
    assert login(base, "beside@example.com", PASSWORD) == 200


def test_a_second_serve_on_the_same_data_dir_is_refused(running: Running) -> None:
    vexport = running.vexport

    _, second = vexport.serve("--no-worker")

    assert second.wait(60) == 1
    assert (
        f"another `vexport serve` (pid {running.proc.pid}) is already running on data dir {vexport.data}"
        in vexport.log.read_text()
    )
    assert httpx.get(f"{running.base}/ready", timeout=5).status_code == 200


def test_the_last_command_out_stops_servers_a_command_started(vexport: Commands) -> None:
    done = vexport.run("create-user", "first@example.com", "--password", PASSWORD)

    assert done.returncode == 0, done.stderr
    assert "a new embedded PostgreSQL and embedded Redis (started here)" in done.stderr
    assert processes_mentioning(vexport.data) == []


def test_servers_left_by_a_killed_serve_are_stopped_and_replaced_by_the_next_start(vexport: Commands) -> None:
    vexport.seed()
    base, proc = vexport.serve("--no-worker")
    wait_ready(base, proc)
    orphans = [postmaster(vexport.data), *redis_servers(vexport.data)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert all(p.is_running() for p in orphans)  # nothing can stop them at a SIGKILL

    base, proc = vexport.serve("--no-worker")
    wait_ready(base, proc)

    assert not any(p.is_running() for p in orphans)
    assert len(redis_servers(vexport.data)) == 1
    assert stop(proc) == 0
    assert processes_mentioning(vexport.data) == []


@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_serve_restarts_an_embedded_server_that_was_killed(running: Running, server: str) -> None:
    data = running.vexport.data
    victim = redis_servers(data)[0] if server == "redis" else postmaster(data)

    victim.kill()
    victim.wait(10)

    assert ready_within(running.base, RECOVER_S)
    assert (
        f"embedded {'Redis' if server == 'redis' else 'PostgreSQL'} restarted"
        in running.vexport.log.read_text()
    )
    assert running.proc.poll() is None


def test_create_user_without_a_password_or_a_terminal_says_how_to_give_one(vexport: Commands) -> None:
    done = vexport.run("create-user", "me@example.com")

    assert done.returncode == 2
    assert "no password: pass --password P, or --password-stdin" in done.stderr
    assert "Aborted" not in done.stderr
    assert not (vexport.data / "postgres").exists()


def test_create_user_reads_the_password_from_stdin(vexport: Commands) -> None:
    vexport.seed()
    done = vexport.run(
        "create-user", "me@example.com", "--password-stdin", "--token", "t", stdin=f"{PASSWORD}\n"
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created me@example.com\nAPI token (shown once): vx_")


def test_data_dir_option_overrides_the_environment(vexport: Commands) -> None:
    other = vexport.cwd / "elsewhere"
    vexport.seed(other)

    done = vexport.run("--data-dir", str(other), "create-user", "me@example.com", "--password", PASSWORD)

    assert done.returncode == 0, done.stderr
    assert f"data dir {other}: embedded PostgreSQL and embedded Redis (started here)" in done.stderr
    assert not vexport.data.exists()


def test_grant_operator_revoke_beside_serve_applies_at_once_in_serve(running: Running) -> None:
    vexport, base = running.vexport, running.base
    made = vexport.run("create-user", "ops@example.com", "--password", PASSWORD, "--operator", "--token", "t")
    token = made.stdout.rsplit(" ", 1)[-1].strip()
    workers = httpx.get(f"{base}/api/workers", headers={"authorization": f"Bearer {token}"}, timeout=5)
    assert workers.status_code == 200

    revoked = vexport.run("grant-operator", "ops@example.com", "--revoke")

    assert revoked.returncode == 0, revoked.stderr
    workers = httpx.get(f"{base}/api/workers", headers={"authorization": f"Bearer {token}"}, timeout=5)
    assert workers.status_code == 404  # the announcement reached serve's Redis, not a private one
