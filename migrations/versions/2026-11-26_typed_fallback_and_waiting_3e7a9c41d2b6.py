"""typed fallback code, and why and until when a pending export waits

Revision ID: 3e7a9c41d2b6
Revises: 8d1f3c2a7b90
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types.datetime
import sqlalchemy as sa
from alembic import op

revision: str = "3e7a9c41d2b6"
down_revision: str | None = "8d1f3c2a7b90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows from before the code: the sentences their writers recorded, once, in this migration only.
_BACKFILL = """
UPDATE exports SET fallback_code = CASE
    WHEN fallback_reason LIKE 'no GPU worker took%' THEN 'gpu_wait_expired'
    WHEN fallback_reason LIKE 'no healthy GPU worker%' THEN 'no_gpu_worker'
    WHEN fallback_reason LIKE 'NVENC has no %' THEN 'codec_unsupported'
    WHEN fallback_reason LIKE 'GPU failed mid-render%' THEN 'gpu_failed'
    WHEN fallback_reason LIKE '%circuit open%' THEN 'circuit_open'
    WHEN fallback_reason LIKE 'this worker renders on the CPU only%' THEN 'cpu_only_worker'
    ELSE 'gpu_unavailable'
END
WHERE fallback_reason IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("exports", sa.Column("fallback_code", sa.String(length=32), nullable=True))
    op.add_column("exports", sa.Column("waiting_code", sa.String(length=32), nullable=True))
    op.add_column(
        "exports",
        sa.Column("wait_until", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    )
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_column("exports", "wait_until")
    op.drop_column("exports", "waiting_code")
    op.drop_column("exports", "fallback_code")
