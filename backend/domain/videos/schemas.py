from __future__ import annotations

import datetime as dt
from uuid import UUID

from backend.lib.schema import Struct


class VideoOut(Struct):
    id: UUID
    original_filename: str
    status: str
    size_bytes: int
    sha256: str
    content_type: str | None
    container: str | None
    duration: float | None
    frame_rate: str | None
    frame_count: int | None
    width: int | None
    height: int | None
    rotation: int
    video_codec: str | None
    pix_fmt: str | None
    bit_depth: int | None
    audio_codec: str | None
    audio_channels: int | None
    audio_layout: str | None
    audio_rate: int | None
    error: str | None
    created_at: dt.datetime


class Page(Struct):
    items: list[VideoOut]
    total: int
    limit: int
    offset: int
