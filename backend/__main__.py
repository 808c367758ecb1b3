"""`vexport`: one console script for the service, its workers and its database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import click

from backend.domain.farm.cli import workers_command
from backend.lib.settings import Settings
from gpu_worker.cli import gpu_info_command, render_command
from gpu_worker.logs import LOG_FORMATS, LogFormat, RedactTokens, configure_logging, parse_log_format

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


def _setup_logging(settings: Settings, log_format: str | None = None) -> LogFormat:
    """Text or JSON lines on stderr (`--log-format`, else LOG_FORMAT); returns the format used."""
    chosen = parse_log_format(log_format) if log_format else settings.core.log_format
    configure_logging(chosen, debug=settings.debug)
    return chosen


def _event_loop() -> asyncio.Runner:
    """uvloop for the long-running processes: `uvicorn.Server.serve` runs on whatever loop it is
    given, and the stock loop cost about a tenth more CPU per request (bench/api.py: 4.5 vs 4.1 ms)."""
    import uvloop

    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


CHILD_STOP_S = 30.0
"""How long `serve` waits for its other API processes to finish their requests and stop."""

GC_THRESHOLDS = (700, 10, 50)
"""An API process runs a full collection after 50 middle-generation ones instead of Python's 10.
Each full pass walks every live object, about 200 per open websocket: with 1000 sockets that is
85-200 ms during which no socket gets a message, and while sockets pile up one ran about every
second (bench/ws.py: publish->receipt p99 170-230 ms in half the runs, 52-57 ms in all of them
with this). The cost is that cyclic garbage (about 90 objects per closed socket) waits longer."""

LOG_FORMAT_OPTION = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="text, or one JSON object per line with export_id/worker_id/attempt (default LOG_FORMAT or text).",
)


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    """Settings with service URLs: the configured ones, else embedded servers started (and stopped) here."""
    from backend.embedded import embedded_postgres, embedded_redis

    with contextlib.ExitStack() as stack:
        core = settings.core
        db = core.database_url or stack.enter_context(embedded_postgres(core.data_dir))
        redis = core.redis_url or stack.enter_context(embedded_redis(core.data_dir))
        yield settings.with_services(db, redis)


def _migrate(settings: Settings) -> None:
    from backend.db.migrate import upgrade

    upgrade(settings.core.async_database_url)


@click.group()
def main() -> None:
    """Video Export: render timeline segments into files, on NVIDIA GPUs or the CPU."""


@main.command()
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

    settings = Settings.from_env()
    chosen = _setup_logging(settings, log_format)
    address = (host or settings.host, port or settings.port)
    _refuse_a_taken_port(*address)  # before the embedded servers start: a clear, quick failure
    with services(settings) as ready:
        _migrate(ready)
        options: dict[str, Any] = {
            "log_level": "info",
            "lifespan": "on",
            "access_log": ready.access_log,
            # uvicorn's own handlers print text; without them its records reach the JSON formatter.
            "log_config": None if chosen == "json" else LOGGING_CONFIG,
        }
        count = processes or int(os.environ.get("API_PROCESSES") or 1)
        sock = _listen(*address, shared=count > 1)
        children = [_fork_api(options, sock, ready) for _ in range(count - 1)]
        try:
            _serve_api(options, sock, ready, with_workers=ready.run_worker and not no_worker)
        finally:
            _stop_children(children)
            sock.close()


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
    with contextlib.suppress(KeyboardInterrupt), _event_loop() as runner:
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


@main.command()
@click.option("--concurrency", type=int, default=None, help="Jobs at once (default WORKER_CONCURRENCY or 1).")
@click.option(
    "--encoder",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default=None,
    help="auto: a GPU worker (GPU queue, each job's choice) when NVENC works here, else a CPU worker; "
    "cpu: never touch a GPU (CPU queue); gpu: refuse to start without NVENC "
    "(default VEXPORT_ENCODER or auto).",
)
@click.option(
    "--gpu",
    "gpu_index",
    type=int,
    default=None,
    help="Render on this CUDA device only (default VEXPORT_GPU).",
)
@click.option(
    "--queue",
    "queue_name",
    default=None,
    help="Queue to take jobs from (default: GPU_QUEUE_NAME for a GPU worker, CPU_QUEUE_NAME otherwise).",
)
@click.option(
    "--nvenc-sessions",
    type=click.IntRange(min=1),
    default=None,
    help="GPU renders at once; more jobs wait for a session (default NVENC_SESSIONS or 2).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics and /health on this port (default METRICS_PORT; unset: none).",
)
@LOG_FORMAT_OPTION
def worker(
    concurrency: int | None,
    encoder: str | None,
    gpu_index: int | None,
    queue_name: str | None,
    nvenc_sessions: int | None,
    metrics_port: int | None,
    log_format: str | None,
) -> None:
    """Run a render worker against REDIS_URL/DATABASE_URL (embedded ones when unset).

    SIGTERM or Ctrl-C drains it, as `vexport workers drain ID` does from anywhere: no new jobs, the
    running ones get DRAIN_GRACE_S to finish (the rest go back to the queue), then it exits 0."""
    from dataclasses import replace

    from gpu_worker.drain import drain
    from gpu_worker.worker import build_worker

    settings = Settings.from_env()
    _setup_logging(settings, log_format)
    overrides = {
        "encoder": encoder,
        "gpu_index": gpu_index,
        "worker_queue": queue_name,
        "nvenc_sessions": nvenc_sessions,
        "metrics_port": metrics_port,
    }
    with services(settings) as ready:
        core = replace(ready.core, **{k: v for k, v in overrides.items() if v is not None})
        w = build_worker(core, concurrency=concurrency)
        # The handlers below own SIGINT/SIGTERM. SAQ's own (Worker.SIGNALS) would replace them, stop
        # the worker, then remove themselves, leaving `stop` unset and the process running forever.
        w.SIGNALS = []

        async def run() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            task = asyncio.create_task(w.start())
            stopping = asyncio.create_task(stop.wait())
            # A signal, or the worker stopped by itself (a remote drain, a failed start-up).
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await drain(w, core.drain_grace_s)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        with _event_loop() as runner:
            runner.run(run())


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    settings = Settings.from_env()
    _setup_logging(settings)
    with services(settings) as ready:
        _migrate(ready)
    click.echo("database is up to date")


@contextlib.asynccontextmanager
async def _db_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """One database session for a command, its engine disposed afterwards."""
    from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig

    config = SQLAlchemyAsyncConfig(
        connection_string=settings.core.async_database_url,
        session_config=AsyncSessionConfig(expire_on_commit=False),
    )
    try:
        async with config.get_session() as db:
            yield db
    finally:
        await config.get_engine().dispose()


async def _create_user(
    settings: Settings, email: str, password: str, token_name: str | None, operator: bool
) -> str | None:
    from backend.domain.accounts.services import ApiTokenService, UserService

    async with _db_session(settings) as db:
        user = await UserService(session=db).register(email, password, operator=operator)
        token = None
        if token_name:
            token, _ = await ApiTokenService(session=db).issue(user.id, token_name)
        await db.commit()
        return token


@main.command("create-user")
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="At least 8 characters; prompted for when not given.",
)
@click.option(
    "--token", "token_name", default=None, help="Also issue an API token with this name and print it."
)
@click.option("--operator", is_flag=True, help="Give the account the operator role (see grant-operator).")
def create_user(email: str, password: str, token_name: str | None, operator: bool) -> None:
    """Create an account (and optionally an API token for scripts)."""
    import msgspec

    from backend.domain.accounts.schemas import Credentials
    from backend.domain.accounts.services import EmailTakenError

    try:
        msgspec.convert({"email": email, "password": password}, Credentials)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from exc
    settings = Settings.from_env()
    with services(settings) as ready:
        _migrate(ready)
        try:
            token = asyncio.run(_create_user(ready, email, password, token_name, operator))
        except EmailTakenError as exc:
            raise click.ClickException(exc.detail) from exc
    click.echo(f"created {email.strip().lower()}" + (" (operator)" if operator else ""))
    if token:
        click.echo(f"API token (shown once): {token}")


async def _set_operator(settings: Settings, email: str, operator: bool) -> None:
    """Committed, then announced, so running API processes stop trusting the user's cached tokens."""
    from redis.asyncio import Redis

    from backend.domain.accounts.services import UserService
    from backend.lib.revocations import Revocation, announce

    async with _db_session(settings) as db:
        user = await UserService(session=db).set_operator(email, operator)
        await db.commit()
    redis = Redis.from_url(settings.core.redis_url or "")
    try:
        await announce(redis, Revocation(user_id=user.id))
    finally:
        await redis.aclose()


@main.command("grant-operator")
@click.argument("email")
@click.option("--revoke", is_flag=True, help="Take the operator role away instead.")
def grant_operator(email: str, revoke: bool) -> None:
    """Give an account the operator role: the workers page and API, metrics details, every user's exports."""
    from advanced_alchemy.exceptions import NotFoundError

    settings = Settings.from_env()
    with services(settings) as ready:
        _migrate(ready)
        try:
            asyncio.run(_set_operator(ready, email, not revoke))
        except NotFoundError as exc:
            raise click.ClickException(str(exc.detail)) from exc
    verb = "is no longer" if revoke else "is now"
    click.echo(f"{email.strip().lower()} {verb} an operator")


main.add_command(workers_command, "workers")
main.add_command(render_command, "render")
main.add_command(gpu_info_command, "gpu-info")

if __name__ == "__main__":
    main()
