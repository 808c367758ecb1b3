"""The reads every API call makes (who holds this token or session) and the one clients poll (an
export's state), on a small plain asyncpg pool beside the ORM's engine.

Through SQLAlchemy's async ORM a one-row read cost about 1.5 ms of CPU here (the greenlet hop, the
statement cache key, instance state, BEGIN/COMMIT round trips), more than the rest of the request;
a prepared statement on asyncpg costs a fraction of that (GET /api/exports/{id}: about 2.5 ms of
server CPU through the ORM, 1.2 ms through this pool, measured with bench/api.py's client).
The statements are SQLAlchemy Core built from the ORM tables and compiled once, so the models stay
the one description of the schema; rows answer attribute access like model instances do. Each is a
single autocommit statement, so a pooled connection never carries session state and the pool skips
asyncpg's reset round trip on release.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from sqlalchemy import Column, Executable, bindparam, select, update
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url

from backend.db import models as m

APPLICATION_NAME = "vexport-hotpath"
"""How its connections show in pg_stat_activity."""
LOST_CONNECTION = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    OSError,
)
"""A pooled connection that died (Postgres restarted, or an admin terminated it) before the pool
noticed; the read runs once more on another connection."""
POOL_MAX = 10
"""Each read holds a connection for a fraction of a millisecond; ten keep up with one API process."""
READ_TIMEOUT_S = 5.0
"""The longest a request waits on the hot path (its turn, a connection, the statement): past it the
database counts as unavailable (503) rather than holding every request open while Postgres hangs."""
SQLALCHEMY_ONLY_OPTIONS = {"prepared_statement_cache_size": "statement_cache_size"}
"""URL options that SQLAlchemy's asyncpg dialect reads and asyncpg itself names otherwise, so one
URL serves both (`?prepared_statement_cache_size=0` is how to run behind pgbouncer's transaction mode)."""

T = TypeVar("T")


class DatabaseUnavailableError(Exception):
    """A hot-path read that could not be answered: Postgres did not answer within READ_TIMEOUT_S,
    or the connection was lost again on the retry. The API answers 503 with Retry-After."""


class Row(asyncpg.Record):
    """A record that also answers `row.status`, so code written for model instances reads it too."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Connection(asyncpg.Connection):
    def get_reset_query(self) -> str:
        return ""  # nothing to reset: see the module docstring


@dataclass(frozen=True, slots=True)
class Statement:
    """A Core statement compiled once for asyncpg (`$n` placeholders) and the bind names in their order."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: Executable) -> Statement:
        compiled = statement.compile(dialect=asyncpg_dialect())
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def _columns(model: type[Any]) -> list[Column[Any]]:
    return [c for c in model.__table__.columns if c.name != "sa_orm_sentinel"]


_TOKEN = m.ApiToken.__table__.c
_USER = m.User.__table__.c
_EXPORT = m.Export.__table__.c
_CALLER = (_USER.id, _USER.email, _USER.is_active, _USER.is_operator, _USER.created_at)
"""What a request needs to know of its caller (never the password hash)."""
TOKEN_OWNER = Statement.of(
    select(_TOKEN.id.label("token_id"), _TOKEN.last_used_at, *_CALLER)
    .join_from(m.ApiToken.__table__, m.User.__table__, _USER.id == _TOKEN.user_id)
    .where(_TOKEN.token_hash == bindparam("token_hash"), _TOKEN.revoked_at.is_(None))
)
USER = Statement.of(select(*_CALLER).where(_USER.id == bindparam("user_id")))
OWNED_EXPORT = Statement.of(
    select(*_columns(m.Export)).where(
        _EXPORT.id == bindparam("export_id"), _EXPORT.user_id == bindparam("owner")
    )
)
TOUCH_TOKEN = Statement.of(
    update(m.ApiToken.__table__)
    .where(_TOKEN.id == bindparam("token_id"))
    .values(last_used_at=bindparam("when"), updated_at=bindparam("when"))
)


def connect_options(async_database_url: str) -> dict[str, Any]:
    """asyncpg's connect arguments for the URL the ORM's engine uses, read by SQLAlchemy's asyncpg
    dialect, so both connect alike."""
    _, options = asyncpg_dialect().create_connect_args(make_url(async_database_url))
    for ours, theirs in SQLALCHEMY_ONLY_OPTIONS.items():
        if ours in options:
            options[theirs] = options.pop(ours)
    return dict(options)


async def _init(connection: asyncpg.Connection) -> None:
    """JSONB as Python values, as the ORM's JSONB columns give them."""
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class HotPath:
    """The pool and its queries; `open` in the app's lifespan, `aclose` at its end."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # First come, first served. Waiting on the pool itself is not: a request arriving just as a
        # connection is released takes it ahead of the woken waiter, which queues again at the back
        # (asyncio.Queue). At 50 concurrent polls that starved some requests to 5x the median
        # latency; this semaphore (fair since Python 3.11.1) keeps the pool from having waiters.
        self._turns = asyncio.Semaphore(POOL_MAX)

    @classmethod
    async def open(cls, async_database_url: str) -> HotPath:
        pool = await asyncpg.create_pool(
            **connect_options(async_database_url),
            min_size=0,  # connect on the first read: the API starts (and /ready says why) without Postgres
            max_size=POOL_MAX,
            init=_init,
            record_class=Row,
            connection_class=_Connection,
            server_settings={"application_name": APPLICATION_NAME},
        )
        return cls(pool)

    async def aclose(self) -> None:
        await self._pool.close()

    async def token_owner(self, token_hash: str) -> Row | None:
        """The unrevoked token with this hash joined to its user's columns (`token_id`,
        `last_used_at`, then the user's), or None."""
        return await self._fetchrow(TOKEN_OWNER, token_hash=token_hash)

    async def user(self, user_id: UUID) -> Row | None:
        return await self._fetchrow(USER, user_id=user_id)

    async def owned_export(self, owner: UUID, export_id: UUID) -> Row | None:
        """The export if `owner` owns it; another user's id reads exactly like a missing one."""
        return await self._fetchrow(OWNED_EXPORT, export_id=export_id, owner=owner)

    async def touch_token(self, token_id: UUID, when: dt.datetime) -> None:
        args = TOUCH_TOKEN.args({"token_id": token_id, "when": when})
        await self._call(lambda: self._pool.execute(TOUCH_TOKEN.sql, *args))

    async def _fetchrow(self, statement: Statement, **values: Any) -> Row | None:
        args = statement.args(values)
        return await self._call(lambda: self._pool.fetchrow(statement.sql, *args))

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S), self._turns:
                try:
                    return await operation()
                except asyncpg.QueryCanceledError:
                    raise
                except LOST_CONNECTION:
                    return await operation()
        except (TimeoutError, *LOST_CONNECTION) as exc:
            raise DatabaseUnavailableError(f"database unavailable: {type(exc).__name__}") from exc
