"""`vexport` commands as a user runs them: real processes, embedded servers, a data dir of the test's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.live import free_port

ROOT = Path(__file__).resolve().parents[3]
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


def redis_servers(data: Path) -> list[psutil.Process]:
    return [p for p in processes_mentioning(data / "redis") if "redis-server" in p.name()]


def postmaster(data: Path) -> psutil.Process:
    return psutil.Process(int((data / "postgres" / "postmaster.pid").read_text().split()[0]))


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


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(STOP_TIMEOUT_S)


@dataclass
class Commands:
    """Runs `vexport` in `cwd` against the data dir `data` (VEXPORT_DATA_DIR), logs in `log`."""

    cwd: Path
    data: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]]
    template: Path

    def seed(self, data: Path | None = None) -> None:
        """Start from an initialised, migrated data dir (`cp -a` keeps the cluster's owner: as root
        the embedded PostgreSQL runs as its own system user)."""
        subprocess.run(["cp", "-a", str(self.template), str(data or self.data)], check=True)

    @property
    def log(self) -> Path:
        return self.cwd / "serve.log"

    def serve(
        self, *args: str, port: int | None = None, **extra_env: str
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--port", str(port), *args],
            cwd=self.cwd,
            env={**self.env, **extra_env},
            stdout=self.log.open("ab"),  # uvicorn's text access log goes to stdout
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return f"http://127.0.0.1:{port}", proc

    def run(self, *args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """A short command (create-user, grant-operator, …) to its end; stdin is not a terminal."""
        return subprocess.run(
            [sys.executable, "-m", "backend", *args],
            cwd=self.cwd,
            env={**self.env, **extra_env},
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )


def _environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "S3_"))}
    env.pop("SECRET_KEY", None)
    return {**env, "PYTHONPATH": str(ROOT), "VEXPORT_DATA_DIR": str(data)}


@pytest.fixture(scope="session")
def migrated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose embedded cluster is initialised and migrated, servers stopped: tests that are
    not about a first start copy it (`Commands.seed`) instead of paying initdb each time."""
    data = tmp_path_factory.mktemp("template") / ".data"
    done = subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        env=_environment(data),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return data


def _commands(root: Path, template: Path) -> Iterator[Commands]:
    data = root / ".data"
    commands = Commands(cwd=root, data=data, env=_environment(data), procs=[], template=template)
    yield commands
    for proc in commands.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for leftover in processes_mentioning(data):  # a test that failed half-way: stop what it left
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()


@pytest.fixture
def vexport(tmp_path: Path, migrated_data_dir: Path) -> Iterator[Commands]:
    yield from _commands(tmp_path, migrated_data_dir)


@dataclass(frozen=True)
class Running:
    """A `vexport serve --no-worker` on a migrated data dir, and the commands to run beside it."""

    vexport: Commands
    base: str
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, migrated_data_dir: Path) -> Iterator[Running]:
    """One serve for the tests of a module that only run things beside it (a start costs 10-20 s
    here); each test leaves it serving."""
    for commands in _commands(tmp_path_factory.mktemp("running"), migrated_data_dir):
        commands.seed()
        base, proc = commands.serve("--no-worker")
        wait_ready(base, proc)
        yield Running(commands, base, proc)
