"""The Alembic migrations produce exactly the models' schema, and downgrade cleanly."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.db.migrate import downgrade, upgrade
from backend.db.models import metadata


async def test_migrated_database_matches_the_models(db_engine: AsyncEngine) -> None:
    def diff(conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        return compare_metadata(context, metadata)

    async with db_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_exports_has_the_designed_indexes(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda c: {i["name"]: i["column_names"] for i in inspect(c).get_indexes("exports")}
        )
        uniques = await conn.run_sync(
            lambda c: [u["column_names"] for u in inspect(c).get_unique_constraints("exports")]
        )
        definition = (
            await conn.execute(
                text("select indexdef from pg_indexes where indexname = 'ix_exports_user_id_created_at'")
            )
        ).scalar_one()
    assert indexes["ix_exports_video_id"] == ["video_id"]
    assert indexes["ix_exports_user_id"] == ["user_id"]
    assert indexes["ix_exports_status"] == ["status"]
    assert "(user_id, created_at DESC)" in definition
    assert ["user_id", "idempotency_key"] in uniques


async def test_export_status_is_a_postgres_enum_with_the_contract_values(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as conn:
        labels = (
            (
                await conn.execute(
                    text(
                        "select e.enumlabel from pg_enum e join pg_type t on t.oid = e.enumtypid "
                        "where t.typname = 'export_status' order by e.enumsortorder"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert labels == ["pending", "processing", "completed", "failed", "cancelled"]


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    await asyncio.to_thread(downgrade, database_url, "base")
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            query = "select typname from pg_type where typname in ('export_status', 'video_status')"
            types = (await conn.execute(text(query))).all()
        assert tables == {"alembic_version"}
        assert types == []
    finally:
        await asyncio.to_thread(upgrade, database_url)
        await engine.dispose()
