from __future__ import annotations

import enum
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import BigInteger, Enum, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class VideoStatus(enum.StrEnum):
    UPLOADED = "uploaded"
    PROBING = "probing"
    READY = "ready"
    REJECTED = "rejected"


class Video(UUIDv7AuditBase):
    """An uploaded source file and what the probe found in it; `storage_key` is server-made."""

    __tablename__ = "videos"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    original_filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    thumbnail_key: Mapped[str | None] = mapped_column(String(512), default=None)
    content_type: Mapped[str | None] = mapped_column(String(100), default=None)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[VideoStatus] = mapped_column(
        Enum(VideoStatus, name="video_status", values_callable=lambda e: [m.value for m in e]),
        default=VideoStatus.UPLOADED,
        index=True,
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    container: Mapped[str | None] = mapped_column(String(64), default=None)
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    frame_rate: Mapped[str | None] = mapped_column(String(32), default=None)
    frame_count: Mapped[int | None] = mapped_column(Integer, default=None)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    rotation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    video_codec: Mapped[str | None] = mapped_column(String(32), default=None)
    pix_fmt: Mapped[str | None] = mapped_column(String(32), default=None)
    bit_depth: Mapped[int | None] = mapped_column(Integer, default=None)
    audio_codec: Mapped[str | None] = mapped_column(String(32), default=None)
    audio_channels: Mapped[int | None] = mapped_column(Integer, default=None)
    audio_layout: Mapped[str | None] = mapped_column(String(32), default=None)
    audio_rate: Mapped[int | None] = mapped_column(Integer, default=None)
