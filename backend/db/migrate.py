"""Alembic, configured in code so `vexport migrate` needs no alembic.ini and takes the app's URL.

env.py calls `asyncio.run`, so these run in a worker thread when called from a running loop.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(async_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s_%%(rev)s")
    return config


def upgrade(async_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(async_url), revision)


def downgrade(async_url: str, revision: str) -> None:
    command.downgrade(alembic_config(async_url), revision)


def revision(async_url: str, message: str) -> None:
    command.revision(alembic_config(async_url), message=message, autogenerate=True)
