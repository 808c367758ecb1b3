"""The worker's own door to Postgres: conditional UPDATEs on `exports`, plain SELECTs on `videos`.

No ORM and no `backend` import (a render box runs without the web stack); the column names follow
backend/db/models/_export.py and _video.py. Every write after the claim is guarded by
`id = :id AND attempt = :attempt AND status = 'processing'`, so a late worker (its attempt was
reclaimed) or a cancelled export makes the write match no row: each method answers whether it
applied and the caller stops quietly when it did not.

Claims are taken only from 'pending'. A crashed attempt leaves its row 'processing'; the reconciler
(tasks/reconcile.py) hands it back with `reset_to_pending` once its SAQ job is gone, and a worker
that is shut down or retried by SAQ does the same for its own attempt before letting go.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from gpu_worker.contract import ExportStatus, Phase
from gpu_worker.fallback import Fallback, fallback_of


@dataclass(frozen=True, slots=True)
class Claim:
    """What the worker needs from a freshly claimed export row."""

    export_id: UUID
    attempt: int
    user_id: UUID
    video_id: UUID
    request: dict[str, Any] | None
    """segments["request"] as the API stored it (None if absent)."""
    encoder_requested: str
    routed: Fallback | None = None
    """Why routing sent the export to the CPU queue (the row's fallback before the render)."""


@dataclass(frozen=True, slots=True)
class SourceVideo:
    storage_key: str
    original_filename: str
    duration: float | None


@dataclass(frozen=True, slots=True)
class RowState:
    status: ExportStatus
    attempt: int


@dataclass(frozen=True, slots=True)
class IdleExport:
    """A non-terminal export as the reconciler sees it; `idle_s` is the time since its last write,
    `worker_id` the registry id of the worker that claimed it (None unless 'processing')."""

    export_id: UUID
    user_id: UUID
    attempt: int
    idle_s: float
    worker_id: str | None = None
    fallback: Fallback | None = None


@dataclass(frozen=True, slots=True)
class WaitingExport:
    """A pending export on one queue, for re-routing; `waited_s` counts from its last write."""

    export_id: UUID
    attempt: int
    codec: str
    encoder_requested: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class ClipRecord:
    """One clip of a clips-mode export, stored under segments["clips"]."""

    name: str
    start: str
    end: str
    frames: int


_CLAIM = text(
    """
    UPDATE exports
       SET status = 'processing', attempt = attempt + 1, worker_id = :worker_id,
           started_at = now(), phase = :phase, progress = 0, error = NULL,
           waiting_code = NULL, wait_until = NULL, updated_at = now()
     WHERE id = :id AND status = 'pending'
       AND (queue_name IS NULL OR queue_name = COALESCE(CAST(:queue AS varchar), queue_name))
    RETURNING attempt, user_id, video_id, segments, encoder_requested, fallback_code, fallback_reason
    """
).columns(segments=JSONB)

_VIDEO = text("SELECT storage_key, original_filename, duration FROM videos WHERE id = :id")

_PROGRESS = text(
    "UPDATE exports SET phase = :phase, progress = :progress, updated_at = now()"
    " WHERE id = :id AND attempt = :attempt AND status = 'processing'"
)

_COMPLETE = text(
    """
    UPDATE exports
       SET status = 'completed', progress = 100, phase = NULL, output_key = :output_key,
           size_bytes = :size_bytes, duration = :duration, encoder_used = :encoder_used,
           fallback_code = :fallback_code, fallback_reason = :fallback_reason, error = NULL,
           segments = segments || jsonb_build_object('clips', CAST(:clips AS jsonb)),
           finished_at = now(), updated_at = now()
     WHERE id = :id AND attempt = :attempt AND status = 'processing'
    """
)

_FAIL = text(
    """
    UPDATE exports
       SET status = 'failed', phase = NULL, error = :error, waiting_code = NULL, wait_until = NULL,
           encoder_used = COALESCE(:encoder_used, encoder_used),
           fallback_code = COALESCE(:fallback_code, fallback_code),
           fallback_reason = COALESCE(:fallback_reason, fallback_reason),
           finished_at = now(), updated_at = now()
     WHERE id = :id AND attempt = :attempt AND status = CAST(:expected AS export_status)
    """
)

_RESET = text(
    """
    UPDATE exports
       SET status = 'pending', phase = :phase, progress = 0, worker_id = NULL, updated_at = now()
     WHERE id = :id AND attempt = :attempt AND status = 'processing'
    """
)

_STATUS = text("SELECT status, attempt FROM exports WHERE id = :id")

_IDLE = text(
    """
    WITH walk AS (
        SELECT COALESCE(CAST(:cutoff AS timestamptz), now() - make_interval(secs => :idle_s)) AS cutoff
    )
    SELECT id, user_id, attempt, worker_id, fallback_code, fallback_reason, updated_at, walk.cutoff,
           EXTRACT(EPOCH FROM now() - updated_at)::float8 AS idle_s
      FROM exports, walk
     WHERE status = CAST(:status AS export_status) AND updated_at <= walk.cutoff
       AND (CAST(:queue AS varchar) IS NULL OR queue_name = :queue OR (:unrouted AND queue_name IS NULL))
       AND (CAST(:after_at AS timestamptz) IS NULL OR (updated_at, id) > (:after_at, CAST(:after_id AS uuid)))
     ORDER BY updated_at, id
     LIMIT :limit
    """
)

IDLE_PAGE_SIZE = 100
"""Rows per keyset page of `ExportRows.idle`; the walk goes on to the last page."""

_WAITING = text(
    """
    SELECT id, attempt, codec, encoder_requested, EXTRACT(EPOCH FROM now() - updated_at)::float8 AS waited_s
      FROM exports
     WHERE status = 'pending' AND queue_name = :queue
     ORDER BY updated_at
     LIMIT :limit
    """
)

_REROUTE = text(
    """
    UPDATE exports
       SET queue_name = :to_queue, fallback_code = :fallback_code, fallback_reason = :fallback_reason,
           waiting_code = NULL, wait_until = NULL, updated_at = now()
     WHERE id = :id AND attempt = :attempt AND status = 'pending' AND queue_name = :from_queue
    """
)


class ExportRows:
    """Conditional reads and writes of export rows on one async engine (asyncpg)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def connect(cls, async_database_url: str, *, pool_size: int = 4) -> ExportRows:
        """A small pool: one render task needs a connection for a few milliseconds every ~0.5 s."""
        return cls(create_async_engine(async_database_url, pool_size=pool_size, pool_pre_ping=True))

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def claim(self, export_id: UUID, worker_id: str, queue: str | None = None) -> Claim | None:
        """pending -> processing with attempt + 1; None when the export is not pending (any more),
        or was routed to another queue than `queue`, the one the job came from (rows routed before
        queues existed have none and match any)."""
        params = {"id": export_id, "worker_id": worker_id, "phase": Phase.DOWNLOADING.value, "queue": queue}
        async with self._engine.begin() as conn:
            row = (await conn.execute(_CLAIM, params)).one_or_none()
        if row is None:
            return None
        segments = row.segments if isinstance(row.segments, dict) else {}
        return Claim(
            export_id=export_id,
            attempt=row.attempt,
            user_id=row.user_id,
            video_id=row.video_id,
            request=segments.get("request"),
            encoder_requested=row.encoder_requested,
            routed=fallback_of(row.fallback_code, row.fallback_reason),
        )

    async def load_video(self, video_id: UUID) -> SourceVideo | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_VIDEO, {"id": video_id})).one_or_none()
        return None if row is None else SourceVideo(row.storage_key, row.original_filename, row.duration)

    async def update_progress(self, export_id: UUID, attempt: int, *, phase: Phase, progress: int) -> bool:
        """Also the row's heartbeat: it moves `updated_at`, which the reconciler watches."""
        return await self._write(
            _PROGRESS, id=export_id, attempt=attempt, phase=phase.value, progress=max(0, min(progress, 100))
        )

    async def complete(
        self,
        export_id: UUID,
        attempt: int,
        *,
        output_key: str,
        size_bytes: int,
        duration: float,
        encoder_used: str,
        fallback: Fallback | None,
        clips: list[ClipRecord] | None = None,
    ) -> bool:
        """processing -> completed; `clips` (clips mode) lands in segments["clips"]."""
        records = [{"name": c.name, "start": c.start, "end": c.end, "frames": c.frames} for c in clips or []]
        return await self._write(
            _COMPLETE,
            id=export_id,
            attempt=attempt,
            output_key=output_key,
            size_bytes=size_bytes,
            duration=duration,
            encoder_used=encoder_used,
            **_fallback_params(fallback),
            clips=json.dumps(records),
        )

    async def fail(
        self,
        export_id: UUID,
        attempt: int,
        error: str,
        *,
        expected: ExportStatus = ExportStatus.PROCESSING,
        encoder_used: str | None = None,
        fallback: Fallback | None = None,
    ) -> bool:
        """`expected` -> failed; the reconciler also fails 'pending' rows whose attempts are used up."""
        return await self._write(
            _FAIL,
            id=export_id,
            attempt=attempt,
            expected=expected.value,
            error=error,
            encoder_used=encoder_used,
            **_fallback_params(fallback),
        )

    async def reset_to_pending(self, export_id: UUID, attempt: int) -> bool:
        """processing -> pending for this attempt, so the next claim (a retry or a re-enqueue) can take it."""
        return await self._write(_RESET, id=export_id, attempt=attempt, phase=Phase.QUEUED.value)

    async def status_of(self, export_id: UUID) -> RowState | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_STATUS, {"id": export_id})).one_or_none()
        return None if row is None else RowState(ExportStatus(row.status), row.attempt)

    async def idle(
        self,
        status: ExportStatus,
        *,
        idle_s: float = 0.0,
        queue: str | None = None,
        unrouted: bool = True,
        page_size: int = IDLE_PAGE_SIZE,
    ) -> AsyncIterator[IdleExport]:
        """Every export in `status` whose row was last written at least `idle_s` seconds ago, oldest
        first; with `queue`, only those routed there (and, if `unrouted`, those routed nowhere).
        Walked in keyset pages up to the first page's cut-off, so a backlog of rows the caller leaves
        alone (waiting behind a busy farm) never hides the ones behind it, and rows written during
        the walk do not come round again."""
        params: dict[str, Any] = {
            "status": status.value,
            "idle_s": float(idle_s),
            "limit": page_size,
            "queue": queue,
            "unrouted": unrouted,
            "cutoff": None,
            "after_at": None,
            "after_id": None,
        }
        while True:
            async with self._engine.connect() as conn:
                page = (await conn.execute(_IDLE, params)).all()
            for r in page:
                fallback = fallback_of(r.fallback_code, r.fallback_reason)
                yield IdleExport(r.id, r.user_id, r.attempt, r.idle_s, r.worker_id, fallback)
            if len(page) < page_size:
                return
            last = page[-1]
            params.update(cutoff=last.cutoff, after_at=last.updated_at, after_id=last.id)

    async def waiting(self, queue: str, *, limit: int = 100) -> list[WaitingExport]:
        """Pending exports routed to `queue`, longest waiting first."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_WAITING, {"queue": queue, "limit": limit})).all()
        return [WaitingExport(r.id, r.attempt, r.codec, r.encoder_requested, r.waited_s) for r in rows]

    async def reroute(
        self, export_id: UUID, attempt: int, from_queue: str, to_queue: str, fallback: Fallback
    ) -> bool:
        """Move a pending export to another queue, recording why (it no longer waits for a GPU);
        False when it was claimed (or moved, or cancelled) meanwhile. Claims check the queue, so a
        late one on `from_queue` fails."""
        return await self._write(
            _REROUTE,
            id=export_id,
            attempt=attempt,
            from_queue=from_queue,
            to_queue=to_queue,
            **_fallback_params(fallback),
        )

    async def _write(self, statement: TextClause, **params: Any) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(statement, params)
        return result.rowcount == 1


def _fallback_params(fallback: Fallback | None) -> dict[str, str | None]:
    """The row's two fallback columns: the typed code and the human detail."""
    if fallback is None:
        return {"fallback_code": None, "fallback_reason": None}
    return {"fallback_code": fallback.code.value, "fallback_reason": fallback.detail}
