from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from gpu_worker.contract import ExportStatus


class ExportSegments(TypedDict):
    """The JSONB `segments` column: the normalised render request the API stored (seconds as
    decimal strings) and, once a clips-mode export completes, one record per clip."""

    request: dict[str, Any]
    clips: list[dict[str, Any]]


class Export(UUIDv7AuditBase):
    """One render request and its outcome. Status moves only by conditional UPDATEs (see DESIGN.md)."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_exports_user_idempotency_key"),)

    video_id: Mapped[UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    resolution: Mapped[str] = mapped_column(String(16))
    quality: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(8))
    codec: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(8))
    segments: Mapped[ExportSegments] = mapped_column(JSONB)
    status: Mapped[ExportStatus] = mapped_column(
        Enum(ExportStatus, name="export_status", values_callable=lambda e: [m.value for m in e]),
        default=ExportStatus.PENDING,
        index=True,
    )
    progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    phase: Mapped[str | None] = mapped_column(String(32), default=None)
    output_key: Mapped[str | None] = mapped_column(String(512), default=None)
    output_url: Mapped[str | None] = mapped_column(Text, default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    encoder_requested: Mapped[str] = mapped_column(String(8), default="auto")
    encoder_used: Mapped[str | None] = mapped_column(String(64), default=None)
    fallback_code: Mapped[str | None] = mapped_column(String(32), default=None)
    """Why the CPU renders it although its encoder choice allowed the GPU (gpu_worker.fallback.FallbackCode);
    `fallback_reason` is the same in words."""
    fallback_reason: Mapped[str | None] = mapped_column(Text, default=None)
    waiting_code: Mapped[str | None] = mapped_column(String(32), default=None)
    """Why a pending export waits (gpu_worker.fallback.WaitingCode) and until when (`wait_until`), set
    by routing and cleared when it leaves the GPU queue's wait (claimed, moved, cancelled, failed)."""
    wait_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    queue_name: Mapped[str | None] = mapped_column(String(128), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


Index("ix_exports_user_id_created_at", Export.user_id, Export.created_at.desc())
