"""`vexport`: one console script for the service, its workers and its database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Iterator

import click

from backend.lib.settings import Settings
from gpu_worker.cli import gpu_info_command, render_command


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
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
def serve(host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the API (and one in-process worker), starting embedded Postgres/Redis when no URLs are set."""
    import uvicorn

    from backend.server.asgi import create_app
    from gpu_worker.worker import build_worker

    settings = Settings.from_env()
    _setup_logging(settings.debug)
    with services(settings) as ready:
        _migrate(ready)
        app = create_app(ready)
        # The imported code lives as long as the process: keep full collections from walking it
        # (bench/ws.py, 1000 sockets: 150-350 ms pauses that stalled every socket's progress).
        gc.collect()
        gc.freeze()
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=host or ready.host, port=port or ready.port, log_level="info", lifespan="on"
            )
        )

        async def run() -> None:
            worker = build_worker(ready.core) if ready.run_worker and not no_worker else None
            if worker:
                worker.SIGNALS = []  # uvicorn owns Ctrl-C here; it stops the server, which stops the worker
            task = asyncio.create_task(worker.start()) if worker else None
            try:
                await server.serve()
            finally:
                if worker and task:
                    await worker.stop()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        # uvicorn re-raises the Ctrl-C it handled once it has shut down; stopping that way is normal.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())


@main.command()
@click.option("--concurrency", type=int, default=None, help="Jobs at once (default WORKER_CONCURRENCY or 1).")
@click.option(
    "--encoder",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default=None,
    help="auto: each job's choice; cpu: never touch a GPU; gpu: refuse to start without NVENC "
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
    "--queue", "queue_name", default=None, help="Queue to take jobs from (default QUEUE_NAME or exports)."
)
def worker(
    concurrency: int | None, encoder: str | None, gpu_index: int | None, queue_name: str | None
) -> None:
    """Run a render worker against REDIS_URL/DATABASE_URL (embedded ones when unset)."""
    from dataclasses import replace

    from gpu_worker.worker import build_worker

    settings = Settings.from_env()
    _setup_logging(settings.debug)
    overrides = {"encoder": encoder, "gpu_index": gpu_index, "queue_name": queue_name}
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
            await stop.wait()
            await w.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(run())


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    settings = Settings.from_env()
    _setup_logging(settings.debug)
    with services(settings) as ready:
        _migrate(ready)
    click.echo("database is up to date")


async def _create_user(settings: Settings, email: str, password: str, token_name: str | None) -> str | None:
    from advanced_alchemy.config import AsyncSessionConfig, SQLAlchemyAsyncConfig

    from backend.domain.accounts.services import ApiTokenService, UserService

    config = SQLAlchemyAsyncConfig(
        connection_string=settings.core.async_database_url,
        session_config=AsyncSessionConfig(expire_on_commit=False),
    )
    try:
        async with config.get_session() as db:
            user = await UserService(session=db).register(email, password)
            token = None
            if token_name:
                token, _ = await ApiTokenService(session=db).issue(user.id, token_name)
            await db.commit()
            return token
    finally:
        await config.get_engine().dispose()


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
def create_user(email: str, password: str, token_name: str | None) -> None:
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
            token = asyncio.run(_create_user(ready, email, password, token_name))
        except EmailTakenError as exc:
            raise click.ClickException(exc.detail) from exc
    click.echo(f"created {email.strip().lower()}")
    if token:
        click.echo(f"API token (shown once): {token}")


main.add_command(render_command, "render")
main.add_command(gpu_info_command, "gpu-info")

if __name__ == "__main__":
    main()
