"""What every `vexport` command shares: logging, the event loop, and the services it runs against.

A command uses the configured DATABASE_URL/REDIS_URL, else the embedded servers of its data dir
(backend/embedded), shared with every other command running there. It says on one line which data
dir or database it uses, so a command run from the wrong place is noticed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import click

from backend.embedded import EmbeddedServers, embedded_servers
from backend.lib.settings import Settings
from gpu_worker.logs import LOG_FORMATS, LogFormat, configure_logging, parse_log_format
from gpu_worker.settings import resolve_data_dir

LOG_FORMAT_OPTION = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="text, or one JSON object per line with export_id/worker_id/attempt (default LOG_FORMAT or text).",
)


def setup_logging(settings: Settings, log_format: str | None = None) -> LogFormat:
    """Text or JSON lines on stderr (`--log-format`, else LOG_FORMAT); returns the format used."""
    chosen = parse_log_format(log_format) if log_format else settings.core.log_format
    configure_logging(chosen, debug=settings.debug)
    return chosen


def event_loop() -> asyncio.Runner:
    """uvloop for the long-running processes: `uvicorn.Server.serve` runs on whatever loop it is
    given, and the stock loop cost about a tenth more CPU per request (bench/api.py: 4.5 vs 4.1 ms)."""
    import uvloop

    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def check_data_dir(*, may_create: bool) -> None:
    """Refuse to create a database in a data dir that only the shell's directory chose.

    Outside a checkout the default data dir is `./.data`; `cd /tmp && vexport create-user …` would
    otherwise initialise an empty database there, and the account would not exist for the server.
    Call before `Settings.from_env()`, which writes the data dir's secret."""
    if os.environ.get("DATABASE_URL"):
        return
    data_dir, origin = resolve_data_dir(os.environ)
    if origin == "cwd" and not may_create and not (data_dir / "postgres" / "PG_VERSION").exists():
        raise click.ClickException(
            f"no embedded database in {data_dir} (outside a checkout the data dir defaults to ./.data "
            "of the current directory): run this where `vexport serve` runs, or pass --data-dir"
        )


def safe_url(url: str) -> str:
    """A service URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Runtime:
    """A command's settings with service URLs, and the embedded servers behind them (if any)."""

    settings: Settings
    embedded: EmbeddedServers | None


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Runtime]:
    """The configured services, else the data dir's embedded ones (started or joined); prints which."""
    core = settings.core
    if core.database_url and core.redis_url:
        click.echo(f"database {safe_url(core.database_url)}, Redis {safe_url(core.redis_url)}", err=True)
        yield Runtime(settings, None)
        return
    new = not (core.data_dir / "postgres" / "PG_VERSION").exists() and not core.database_url
    with embedded_servers(core.data_dir, postgres=not core.database_url, redis=not core.redis_url) as servers:
        parts = []
        if servers.postgres is not None:
            parts.append("a new embedded PostgreSQL" if new else "embedded PostgreSQL")
        else:
            parts.append(f"database {safe_url(core.database_url or '')}")
        if servers.redis is not None:
            parts.append("embedded Redis")
        else:
            parts.append(f"Redis {safe_url(core.redis_url or '')}")
        how = "started here" if servers.started else "shared with the command already running there"
        click.echo(f"data dir {core.data_dir}: {' and '.join(parts)} ({how})", err=True)
        yield Runtime(
            settings.with_services(
                core.database_url or (servers.postgres.url if servers.postgres else ""),
                core.redis_url or (servers.redis.url if servers.redis else ""),
            ),
            servers,
        )


def _only_upgrades(record: logging.LogRecord) -> bool:
    return str(record.msg).startswith("Running upgrade")


def migrate_to_head(settings: Settings) -> None:
    """Apply pending migrations; of Alembic's lines only the upgrades it runs are shown."""
    from backend.db.migrate import upgrade

    steps = logging.getLogger("alembic.runtime.migration")
    if steps.getEffectiveLevel() > logging.INFO:  # quietened (gpu_worker.logs), not in DEBUG
        steps.setLevel(logging.INFO)
        steps.addFilter(_only_upgrades)
    upgrade(settings.core.async_database_url)
