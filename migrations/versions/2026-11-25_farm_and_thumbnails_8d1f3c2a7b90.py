"""operators, video thumbnails and the queue an export was routed to

Revision ID: 8d1f3c2a7b90
Revises: 5cb87fb75084
Create Date: 2026-11-25 03:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d1f3c2a7b90"
down_revision: str | None = "5cb87fb75084"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("is_operator", sa.Boolean(), server_default="false", nullable=False))
    op.add_column("videos", sa.Column("thumbnail_key", sa.String(length=512), nullable=True))
    op.add_column("exports", sa.Column("queue_name", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("exports", "queue_name")
    op.drop_column("videos", "thumbnail_key")
    op.drop_column("users", "is_operator")
