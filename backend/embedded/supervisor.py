"""`serve` keeps its embedded servers alive: a crashed one is restarted, with a bounded backoff.

Without this, a Redis or PostgreSQL killed under `serve` (the OOM killer, a stray `kill`) stayed
dead and `/ready` answered 503 until somebody restarted everything by hand. Clients reconnect by
themselves: both servers come back on the same unix socket. When restarts keep failing (more than
MAX_RESTARTS within WINDOW_S), `serve` gives up and exits non-zero, so a process supervisor
(systemd, Docker's restart policy) can take over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from backend.embedded import EmbeddedServers

log = logging.getLogger("vexport.embedded")

CHECK_EVERY_S = 1.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
MAX_RESTARTS = 5
WINDOW_S = 300.0


class Supervisor:
    """A daemon thread that checks the servers every CHECK_EVERY_S and restarts dead ones."""

    def __init__(self, servers: EmbeddedServers, on_give_up: Callable[[], None]) -> None:
        self._servers = servers
        self._on_give_up = on_give_up
        self._stop = threading.Event()
        self._restarts: deque[float] = deque()
        self._thread = threading.Thread(target=self._run, name="embedded-supervisor", daemon=True)
        self.gave_up = False

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def dead(self) -> list[str]:
        """Names of the needed servers that are not running."""
        found = []
        if self._servers.postgres is not None and self._servers.postgres.process() is None:
            found.append("PostgreSQL")
        if self._servers.redis is not None and self._servers.redis.process() is None:
            found.append("Redis")
        return found

    def _run(self) -> None:
        delay = FIRST_DELAY_S
        while not self._stop.wait(CHECK_EVERY_S):
            dead = self.dead()
            if not dead:
                delay = FIRST_DELAY_S
                continue
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > WINDOW_S:
                self._restarts.popleft()
            if len(self._restarts) >= MAX_RESTARTS:
                log.error(
                    "embedded %s keeps dying (%d restarts in %.0f s); stopping so that a supervisor "
                    "can restart vexport",
                    " and ".join(dead), len(self._restarts), WINDOW_S,
                )  # fmt: skip
                self.gave_up = True
                self._on_give_up()
                return
            self._restarts.append(now)
            log.warning("embedded %s is not running; restarting it", " and ".join(dead))
            try:
                with self._servers.lease.deciding():
                    self._servers.ensure_running()
            except Exception as exc:  # logged; the next round retries after a longer delay
                log.warning("restarting embedded %s failed: %s (again in %.1f s)", "+".join(dead), exc, delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, MAX_DELAY_S)
            else:
                log.warning("embedded %s restarted", " and ".join(dead))
