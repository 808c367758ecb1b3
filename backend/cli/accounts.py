"""`vexport migrate`, `create-user` and `grant-operator`: the database and accounts from a shell.

They run against the same services as `serve` (its embedded servers when it runs on this data dir,
shared, never replaced), so an account created or promoted here is at once visible to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import click

from backend.cli.runtime import check_data_dir, migrate_to_head, services, setup_logging
from backend.lib.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@click.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    check_data_dir(may_create=True)
    settings = Settings.from_env()
    setup_logging(settings)
    with services(settings) as runtime:
        migrate_to_head(runtime.settings)
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


def _read_password(given: str | None, from_stdin: bool) -> str:
    """--password, else --password-stdin's first line, else a prompt on a terminal; never a silent
    'Aborted!' (click's prompt with no terminal)."""
    if given is not None:
        return given
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise click.UsageError(
            "no password: pass --password P, or --password-stdin with the password on standard input "
            "(the prompt needs a terminal)"
        )
    return click.prompt("Password (at least 8 characters)", hide_input=True, confirmation_prompt=True)


@click.command("create-user")
@click.argument("email")
@click.option("--password", default=None, help="At least 8 characters (else --password-stdin or a prompt).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input's first line.")
@click.option(
    "--token", "token_name", default=None, help="Also issue an API token with this name and print it."
)
@click.option("--operator", is_flag=True, help="Give the account the operator role (see grant-operator).")
def create_user(
    email: str, password: str | None, password_stdin: bool, token_name: str | None, operator: bool
) -> None:
    """Create an account (and optionally an API token for scripts)."""
    secret = _read_password(password, password_stdin)  # before the slow imports: a refusal is quick
    import msgspec

    from backend.domain.accounts.schemas import Credentials
    from backend.domain.accounts.services import EmailTakenError

    try:
        msgspec.convert({"email": email, "password": secret}, Credentials)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from exc
    check_data_dir(may_create=False)
    settings = Settings.from_env()
    with services(settings) as runtime:
        migrate_to_head(runtime.settings)
        try:
            token = asyncio.run(_create_user(runtime.settings, email, secret, token_name, operator))
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


@click.command("grant-operator")
@click.argument("email")
@click.option("--revoke", is_flag=True, help="Take the operator role away instead.")
def grant_operator(email: str, revoke: bool) -> None:
    """Give an account the operator role: the workers page and API, metrics details, every user's exports."""
    from advanced_alchemy.exceptions import NotFoundError

    check_data_dir(may_create=False)
    settings = Settings.from_env()
    with services(settings) as runtime:
        migrate_to_head(runtime.settings)
        try:
            asyncio.run(_set_operator(runtime.settings, email, not revoke))
        except NotFoundError as exc:
            raise click.ClickException(str(exc.detail)) from exc
    verb = "is no longer" if revoke else "is now"
    click.echo(f"{email.strip().lower()} {verb} an operator")
