"""Export DTOs. The request mirrors `gpu_worker.contract.RenderRequest` so OpenAPI lists the presets,
but seconds stay plain strings/numbers here: the contract parses them exactly (as Fractions)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

import msgspec

from backend.lib.schema import Struct
from gpu_worker.contract import Codec, EncoderChoice, ExportStatus, Format, Mode, Quality, Resolution
from gpu_worker.fallback import FallbackCode, WaitingCode

Seconds = str | int | float


class SegmentIn(Struct, forbid_unknown_fields=True):
    """A half-open span [start, end) of source time: "12.5", "1001/30000" or a number."""

    start: Seconds
    end: Seconds


class ExportCreate(Struct, forbid_unknown_fields=True):
    """What to render; every field has the contract's default, and no segments means the whole video."""

    segments: list[SegmentIn] = msgspec.field(default_factory=list)
    resolution: Resolution = Resolution.SOURCE
    quality: Quality = Quality.STANDARD
    format: Format = Format.MP4
    codec: Codec | None = None
    mode: Mode = Mode.SINGLE
    encoder: EncoderChoice = EncoderChoice.AUTO


class ExportOut(Struct):
    id: UUID
    video_id: UUID
    user_id: UUID
    """The owner: with `scope=all` an operator's list holds every user's exports."""
    status: ExportStatus
    progress: int
    phase: str | None
    resolution: str
    quality: str
    format: str
    codec: str
    mode: str
    segments: list[dict[str, str]]
    clips: list[dict[str, Any]]
    size_bytes: int | None
    duration: float | None
    encoder_requested: str
    encoder_used: str | None
    fallback_code: FallbackCode | None
    """Why the CPU renders (rendered) it although `encoder_requested` allowed the GPU; for `auto`
    the CPU is a normal outcome, for `gpu` a request that could not be honoured."""
    fallback_reason: str | None
    """`fallback_code` in words, naming GPUs, codecs or errors."""
    waiting_code: WaitingCode | None
    """Why a pending export waits beyond its queue (`no_gpu_worker`: a `gpu` export with no GPU worker
    online); None otherwise, and once it is claimed, moved to the CPU queue or cancelled."""
    waiting_reason: str | None
    """`waiting_code` in words."""
    wait_until: dt.datetime | None
    """When a waiting export stops waiting: then it renders on the CPU."""
    queue_name: str | None
    """Operators only (None for everyone else: farm internals): the queue routing sent it to (the
    GPU or the CPU queue); None for exports from before routing."""
    worker_id: str | None
    """Operators only (None for everyone else: it names hosts): the registry id (`host:pid`) of the
    worker that claimed the latest attempt, kept once it finished; None while the export waits in a
    queue (also after a hand-back)."""
    attempt: int
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    download_url: str | None


class ExportPage(Struct):
    """One page of history, newest first; pass `next_cursor` back as `cursor` for the next one."""

    items: list[ExportOut]
    limit: int
    next_cursor: str | None
