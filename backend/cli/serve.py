"""`vexport serve`: the API and pages, an in-process render worker, and the embedded servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import click

from backend.cli.runtime import (
    LOG_FORMAT_OPTION,
    check_data_dir,
    event_loop,
    migrate_to_head,
    services,
    setup_logging,
)
from backend.embedded import DataDirBusyError, serve_lock
from backend.embedded.supervisor import Supervisor
from backend.lib.settings import Settings
from gpu_worker.logs import RedactTokens

CHILD_STOP_S = 30.0
"""How long `serve` waits for its other API processes to finish their requests and stop."""

GC_THRESHOLDS = (700, 10, 50)
"""An API process runs a full collection after 50 middle-generation ones instead of Python's 10.
Each full pass walks every live object, about 200 per open websocket: with 1000 sockets that is
85-200 ms during which no socket gets a message, and while sockets pile up one ran about every
second (bench/ws.py: publish->receipt p99 170-230 ms in half the runs, 52-57 ms in all of them
with this). The cost is that cyclic garbage (about 90 objects per closed socket) waits longer."""


@click.command()
@click.option("--host", default=None, help="Bind address (default HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default PORT or 8000).")
@click.option("--no-worker", is_flag=True, help="Do not run the in-process export worker.")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="API processes sharing the port, one core each (default API_PROCESSES or 1); "
    "the in-process render worker runs in the first only.",
)
@LOG_FORMAT_OPTION
def serve(
    host: str | None, port: int | None, no_worker: bool, processes: int | None, log_format: str | None
) -> None:
    """Run the API and an in-process worker (a GPU worker and a CPU worker on a GPU machine),
    starting embedded Postgres/Redis when no URLs are set."""
    from uvicorn.config import LOGGING_CONFIG

    from backend.server.limits import server_limits  # the web stack loads for `serve` only

    check_data_dir(may_create=True)
    settings = Settings.from_env()
    chosen = setup_logging(settings, log_format)
    address = (host or settings.host, port or settings.port)
    _refuse_a_taken_port(*address)  # before the embedded servers start: a clear, quick failure
    with _own_data_dir(settings), services(settings) as runtime:
        ready = runtime.settings
        migrate_to_head(ready)
        options: dict[str, Any] = {
            **server_limits(ready),
            "log_level": "info",
            "lifespan": "on",
            "access_log": ready.access_log,
            # uvicorn's own handlers print text; without them its records reach the JSON formatter.
            "log_config": None if chosen == "json" else LOGGING_CONFIG,
        }
        count = processes or int(os.environ.get("API_PROCESSES") or 1)
        sock = _listen(*address, shared=count > 1)
        children = [_fork_api(options, sock, ready) for _ in range(count - 1)]
        url = f"http://{_url_host(address[0])}:{sock.getsockname()[1]}"
        click.echo(f"Video Export is listening on {url} (Ctrl-C stops it)", err=True)
        supervisor = Supervisor(runtime.embedded, on_give_up=_stop_self) if runtime.embedded else None
        try:
            with supervisor or contextlib.nullcontext():
                _serve_api(options, sock, ready, with_workers=ready.run_worker and not no_worker)
        finally:
            _stop_children(children)
            sock.close()
    if supervisor is not None and supervisor.gave_up:
        raise SystemExit(1)


@contextlib.contextmanager
def _own_data_dir(settings: Settings) -> Iterator[None]:
    """One `serve` per data dir (its workers, scratch and store are not meant to be shared)."""
    try:
        with serve_lock(settings.core.data_dir):
            yield
    except DataDirBusyError as exc:
        raise click.ClickException(str(exc)) from exc


def _stop_self() -> None:
    """Stop `serve` as Ctrl-C does (the embedded supervisor gave up)."""
    os.kill(os.getpid(), signal.SIGTERM)


def _url_host(host: str) -> str:
    """The address to print: a wildcard bind is reached on loopback from this machine."""
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - compared, not bound
    return f"[{loopback}]" if ":" in loopback else loopback


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Fail the start if anything listens on the port: SO_REUSEPORT (`_listen`) would otherwise let
    a second `serve --processes N` of the same user share it with the first, and the kernel would
    split connections between the two (old and new code during a deploy)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _listen(host: str, port: int, *, shared: bool) -> socket.socket:
    """An API process's listening socket. Its protocol is named: asyncio sets TCP_NODELAY only on
    sockets whose proto is IPPROTO_TCP, and without it a response's second segment waits for a
    delayed ACK (about 40 ms a request). `shared`: each API process binds its own socket to the port
    with SO_REUSEPORT, so the kernel hashes connections across them (50 split 20/30 or 24/26); with
    one inherited socket the process that woke first accepted most of a burst (47 of 50)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_api(
    options: dict[str, Any],
    sock: socket.socket,
    ready: Settings,
    *,
    with_workers: bool,
    parent: int | None = None,
) -> None:
    """One API process on its listening socket (see `_listen`); `with_workers` also runs the
    in-process render worker(s) on its loop, and an extra process (`parent` set) stops by itself
    if `serve` is gone."""
    import uvicorn

    from backend.server.asgi import create_app
    from gpu_worker.worker import serve_workers

    app = create_app(ready)
    # The imported code lives as long as the process: keep full collections from walking it
    # (bench/ws.py, 1000 sockets: 150-350 ms pauses that stalled every socket's progress).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    for name in ("uvicorn.error", "uvicorn.access"):  # after Config: it (re)configures their handlers
        logging.getLogger(name).addFilter(RedactTokens())

    async def run() -> None:
        # A GPU worker comes with a CPU worker, so CPU-queue exports also render here.
        workers = serve_workers(ready.core) if with_workers else []
        for worker in workers:
            worker.SIGNALS = []  # uvicorn owns Ctrl-C here; it stops the server, which stops the workers
        tasks = [asyncio.create_task(worker.start()) for worker in workers]
        orphan_watch = asyncio.create_task(_exit_with(parent, server)) if parent is not None else None
        try:
            await server.serve(sockets=[sock])
        finally:
            if orphan_watch is not None:
                orphan_watch.cancel()
            await asyncio.gather(*(worker.stop() for worker in workers))
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # uvicorn re-raises the Ctrl-C it handled once it has shut down; stopping that way is normal.
    with contextlib.suppress(KeyboardInterrupt), event_loop() as runner:
        runner.run(run())


def _fork_api(options: dict[str, Any], sock: socket.socket, ready: Settings) -> int:
    """Fork an extra API process; it leaves with os._exit so the parent's exit handlers (the
    embedded servers it started) never run in it."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # Its own process group: the terminal's Ctrl-C reaches only `serve`, which then stops this
    # process once (a second signal would make uvicorn abandon its graceful shutdown).
    os.setpgid(0, 0)
    code = 1
    try:
        host, port = sock.getsockname()[:2]  # the port `serve` bound, also when it asked for 0
        sock.close()
        own = _listen(host, port, shared=True)
        _serve_api(options, own, ready, with_workers=False, parent=parent)
        code = 0
    finally:
        os._exit(code)


async def _exit_with(parent: int, server: Any) -> None:
    """Stop this API process once `serve` (its parent) is gone, e.g. killed with SIGKILL."""
    while os.getppid() == parent:  # noqa: ASYNC110 (nothing signals a parent's death: poll it)
        await asyncio.sleep(1.0)
    server.should_exit = True


def _stop_children(pids: list[int]) -> None:
    """Ask the other API processes to stop (they may have had the terminal's Ctrl-C already) and
    reap them, so no process outlives `serve`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_S
    for pid in pids:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
