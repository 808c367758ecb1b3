"""Who uses a data dir's embedded servers, from file locks the kernel drops when a process dies.

Every command that runs against a data dir holds a shared lock on `run/users.lock` for as long as it
runs, and decides to start or stop the servers only under the exclusive `run/start.lock`. So:
- the first command in starts the servers; an exclusive lock on `users.lock` that succeeds there
  proves nobody else is using the data dir, so servers found running then are orphans of a
  process that died (SIGKILL, a lost terminal) and are stopped before fresh ones start;
- the last one out stops them, whichever process started them;
- `serve` also holds `run/serve.lock` exclusively, so a second `serve` on the same data dir is
  refused instead of running a second worker set beside the first.
flock(2) locks belong to the open file, not the process, and vanish with it: a crash never leaves a
stale lock behind, unlike a pid file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class DataDirBusyError(RuntimeError):
    """Another `vexport serve` holds the data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another `vexport serve` ({who}) is already running on data dir {data_dir}; "
            "stop it first, or use another VEXPORT_DATA_DIR"
        )
        self.pid = pid


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Lease:
    """This process's use of one data dir's embedded servers (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self._users: int | None = None

    @contextlib.contextmanager
    def deciding(self) -> Iterator[None]:
        """Hold `start.lock`: nobody else starts, stops, joins or leaves meanwhile."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = _open(self.run_dir / "start.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def join(self) -> bool:
        """Become a user (call while `deciding`); True when nobody else uses the data dir."""
        fd = _open(self.run_dir / "users.lock")
        alone = _try_lock(fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_SH)  # nobody can join between the two: we hold start.lock
        self._users = fd
        return alone

    def leave(self) -> bool:
        """Stop being a user (call while `deciding`); True when this was the last one."""
        if self._users is not None:
            os.close(self._users)
            self._users = None
        probe = _open(self.run_dir / "users.lock")
        try:
            return _try_lock(probe, fcntl.LOCK_EX)
        finally:
            os.close(probe)


@contextlib.contextmanager
def serve_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data dir for one `serve` (its pid written in the lock file for the message)."""
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _open(run_dir / "serve.lock")
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise DataDirBusyError(data_dir, int(text) if text.isdigit() else None)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
