"""Exports: validate a render request against the contract, record it, enqueue it; read, cancel, delete.

Postgres is the source of truth. The row is committed before the job is enqueued, so a worker never
dequeues an id it cannot load; if the enqueue itself fails (Redis down) the row stays `pending` and
the worker's reconciler enqueues it later, so the request still answers 202.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import PurePath
from typing import Any
from uuid import UUID

import msgspec
from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.exceptions import ClientException, TooManyRequestsException
from redis.asyncio import Redis
from saq.queue.base import Queue
from sqlalchemy import Select, delete, func, select, tuple_, update

from backend.db import models as m
from backend.domain.exports.messages import announce_cancel, announce_created
from backend.domain.exports.schemas import ExportCreate
from backend.lib.auth import CurrentUser
from backend.lib.exceptions import field_errors
from gpu_worker.contract import (
    ContractError,
    ExportStatus,
    Mode,
    RenderRequest,
    decode_request,
    enc_hook,
    fit_size,
)
from gpu_worker.routing import ExportQueues, Route
from gpu_worker.store import Store, sanitize_filename
from gpu_worker.tasks.enqueue import enqueue_export

log = logging.getLogger(__name__)

ACTIVE = (ExportStatus.PENDING, ExportStatus.PROCESSING)
ACTIVE_LIMIT_RETRY_AFTER_S = 30
"""A guess, not a promise: renders take minutes, so polling faster than this only adds load."""
RATE_WINDOW_S = 60
IDEMPOTENCY_KEY_MAX = 255


class UnprocessableExport(ClientException):
    status_code = 422


class ExportConflict(ClientException):
    status_code = 409


def body_errors(field: str, message: str) -> list[dict[str, str]]:
    """The contract's error named like Litestar's own body errors, through the app's one shape."""
    return field_errors([{"source": "body", "key": field, "message": message}])


def to_render_request(data: ExportCreate) -> RenderRequest:
    """The contract's request; seconds that do not parse answer 422 naming the field."""
    try:
        return decode_request(msgspec.to_builtins(data))
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        raise UnprocessableExport(
            detail="invalid export request", extra=body_errors(where.rstrip("`") or "segments", message)
        ) from exc


def request_json(request: RenderRequest) -> dict[str, Any]:
    """The normalised request as stored in `segments["request"]` (seconds as decimal strings)."""
    return msgspec.to_builtins(request, enc_hook=enc_hook)


def probed_duration(video: m.Video) -> Fraction | None:
    """The probe's duration (a float column) as the exact decimal it prints as. Not read with
    `parse_seconds`: it is the probe's number, not a client's, and may be more precise than those."""
    return None if video.duration is None else Fraction(repr(video.duration))


def encode_cursor(export: m.Export) -> str:
    raw = f"{export.created_at.isoformat()}|{export.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = raw.partition("|")
        at = dt.datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive timestamp")
        return at, UUID(ident)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise UnprocessableExport(
            detail="invalid cursor", extra=[{"field": "query.cursor", "message": "not a cursor"}]
        ) from exc


async def check_rate_limit(redis: Redis, user_id: UUID, per_minute: int) -> None:
    """A fixed one-minute window per user (INCR + EXPIRE): cheap, and enough to stop a script in a loop."""
    window, elapsed = divmod(int(time.time()), RATE_WINDOW_S)
    key = f"ratelimit:exports:{user_id}:{window}"
    async with redis.pipeline(transaction=True) as pipe:
        count, _ = await pipe.incr(key).expire(key, RATE_WINDOW_S).execute()
    if count > per_minute:
        retry_after = RATE_WINDOW_S - elapsed
        raise TooManyRequestsException(
            detail=f"at most {per_minute} export requests a minute",
            headers={"Retry-After": str(retry_after)},
        )


def output_filename(video: m.Video, export: m.Export) -> str:
    """`holiday clip (272p).mp4`, or `holiday clip (272p clips).zip` for a ZIP of clips: named by
    what the file holds, the short side of the picture the engine renders. That size comes from the
    contract's `fit_size`, the engine's own sizing, which never upscales: 720p asked of a 640x272
    source holds 640x272, so it is named 272p."""
    stem = PurePath(video.original_filename).stem or "video"
    label = str(export.resolution)
    if video.width is not None and video.height is not None:
        label = f"{min(fit_size(video.width, video.height, export.resolution, video.rotation))}p"
    label, ext = (f"{label} clips", "zip") if export.mode == Mode.CLIPS else (label, export.format)
    return sanitize_filename(f"{stem} ({label}).{ext}", default=f"export.{ext}")


@dataclass(frozen=True, slots=True)
class Requested:
    export: m.Export
    created: bool
    """False when an Idempotency-Key replay returned an earlier export."""


class ExportService(SQLAlchemyAsyncRepositoryService[m.Export]):
    class Repo(SQLAlchemyAsyncRepository[m.Export]):
        model_type = m.Export

    repository_type = Repo

    async def request(
        self,
        user: CurrentUser,
        video_id: UUID,
        data: ExportCreate,
        idempotency_key: str | None,
        queue: ExportQueues,
        *,
        max_active: int,
        max_output: int,
    ) -> Requested:
        """Validate, then route (gpu_worker.routing), insert and enqueue once per Idempotency-Key.
        The row records the queue and, when routing chose the CPU for an `auto` export, why; a `gpu`
        export that no GPU worker online can take records that it waits, and until when.

        The user's row is locked (FOR UPDATE) for the check-and-insert, which serialises a user's
        concurrent requests: two retries with one key cannot both insert, and the active-export
        limit cannot be overshot. Other users are not slowed down.
        """
        if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            raise UnprocessableExport(
                detail="invalid Idempotency-Key",
                extra=[
                    {"field": "header.Idempotency-Key", "message": f"1 to {IDEMPOTENCY_KEY_MAX} characters"}
                ],
            )
        session = self.repository.session
        video = await session.scalar(
            select(m.Video).where(m.Video.id == video_id, m.Video.user_id == user.id)
        )
        if video is None:
            raise NotFoundError("video not found")
        if video.status != m.VideoStatus.READY:
            raise ExportConflict(detail="video is not ready")
        render = to_render_request(data)
        try:
            render.validate(probed_duration(video), max_output)
        except ContractError as exc:
            raise UnprocessableExport(
                detail="invalid export request", extra=body_errors(exc.field, exc.message)
            ) from exc
        wanted = request_json(render)
        # Routing reads the worker registry in Redis: done before the lock, which it does not need.
        route = await queue.route(render.video_codec, render.encoder)

        await session.execute(select(m.User.id).where(m.User.id == user.id).with_for_update())
        if idempotency_key is not None:
            earlier = await self.get_one_or_none(user_id=user.id, idempotency_key=idempotency_key)
            if earlier is not None:
                if earlier.video_id != video_id or earlier.segments["request"] != wanted:
                    raise UnprocessableExport(detail="Idempotency-Key reused with a different request")
                return Requested(earlier, created=False)
        active = await self.count(m.Export.user_id == user.id, m.Export.status.in_(ACTIVE))
        if active >= max_active:
            raise TooManyRequestsException(
                detail=f"at most {max_active} exports may be pending or processing at once",
                headers={"Retry-After": str(ACTIVE_LIMIT_RETRY_AFTER_S)},
            )
        export = await self.create(
            m.Export(
                video_id=video.id,
                user_id=user.id,
                resolution=render.resolution,
                quality=render.quality,
                format=render.format,
                codec=render.video_codec,
                mode=render.mode,
                encoder_requested=render.encoder,
                queue_name=route.queue,
                fallback_code=route.fallback.code if route.fallback else None,
                fallback_reason=route.fallback.detail if route.fallback else None,
                waiting_code=route.waiting,
                wait_until=_wait_until(route, queue.settings.gpu_wait_s),
                segments={"request": wanted, "clips": []},
                status=ExportStatus.PENDING,
                attempt=0,
                idempotency_key=idempotency_key,
            ),
            auto_commit=True,
        )
        await announce_created(export, queue.redis)
        try:
            await enqueue_export(queue.of(route), export.id)
        except Exception:
            log.exception("could not enqueue export %s; the reconciler will pick it up", export.id)
        return Requested(export, created=True)

    async def get_owned(self, owner: UUID, export_id: UUID) -> m.Export:
        export = await self.get_one_or_none(id=export_id, user_id=owner)
        if export is None:
            raise NotFoundError("export not found")
        return export

    async def page(
        self,
        owner: UUID | None,
        *,
        status: ExportStatus | None = None,
        video_id: UUID | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[m.Export], str | None]:
        """Newest first by (created_at, id) keyset: walks the (user_id, created_at desc) index, and
        a page never shifts when new exports arrive while a client pages through history. `owner`
        None pages through every user's exports (an operator's `scope=all`)."""
        query = _history(owner, status, video_id)
        if cursor is not None:
            created, ident = decode_cursor(cursor)
            query = query.where(tuple_(m.Export.created_at, m.Export.id) < tuple_(created, ident))
        query = query.order_by(m.Export.created_at.desc(), m.Export.id.desc()).limit(limit + 1)
        rows = list((await self.repository.session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]) if more else None

    async def newer_page(
        self,
        owner: UUID,
        cursor: str,
        *,
        status: ExportStatus | None = None,
        video_id: UUID | None = None,
        limit: int = 20,
    ) -> tuple[list[m.Export], bool]:
        """The `limit` exports just newer than `cursor`, newest first, and whether still newer ones
        exist: the way back through history pages (the web page's "Newer" link)."""
        created, ident = decode_cursor(cursor)
        query = (
            _history(owner, status, video_id)
            .where(tuple_(m.Export.created_at, m.Export.id) > tuple_(created, ident))
            .order_by(m.Export.created_at.asc(), m.Export.id.asc())
            .limit(limit + 1)
        )
        rows = list((await self.repository.session.scalars(query)).all())
        return rows[:limit][::-1], len(rows) > limit

    async def video_names(self, owner: UUID) -> dict[UUID, str]:
        """The owner's videos by id, newest first: history rows and its "Video" filter name them."""
        rows = await self.repository.session.execute(
            select(m.Video.id, m.Video.original_filename)
            .where(m.Video.user_id == owner)
            .order_by(m.Video.created_at.desc())
        )
        return {ident: name for ident, name in rows}

    async def cancel(self, owner: UUID, export_id: UUID, queue: ExportQueues, redis: Redis) -> m.Export:
        """Cancel a pending or processing export and keep its record (the web page's Cancel):
        the same conditional UPDATE, announcement and job abort as `cancel_and_delete`, without the
        delete. A finished export is returned unchanged."""
        export = await self.get_owned(owner, export_id)
        if await self._cancel(export):
            await announce_cancel(export, redis)
            await _abort_job(export.id, queue.named(export.queue_name))
        return export

    async def output_filename(self, export: m.Export) -> str:
        """The name a download of `export` carries (`output_filename`)."""
        video = await self.repository.session.get_one(m.Video, export.video_id)
        return output_filename(video, export)

    async def original_filename(self, export: m.Export) -> str:
        name = await self.repository.session.scalar(
            select(m.Video.original_filename).where(m.Video.id == export.video_id)
        )
        return name or "video"

    async def cancel_and_delete(
        self, owner: UUID, export_id: UUID, store: Store, queue: ExportQueues, redis: Redis
    ) -> None:
        """Cancel if still active, then delete the row and its output.

        The row goes before the object (as for videos): a stray object is only storage, while a row
        pointing at a missing object would be a broken download. The key is read by the DELETE
        itself, so an output a worker recorded a moment ago is not missed. The Redis snapshot is
        left to expire: its terminal status is what makes a late worker message a no-op, whereas
        deleting it would let that message start a fresh snapshot at seq 1.
        """
        export = await self.cancel(owner, export_id, queue, redis)
        session = self.repository.session
        output_key = await session.scalar(
            delete(m.Export)
            .where(m.Export.id == export.id, m.Export.user_id == owner)
            .returning(m.Export.output_key)
        )
        await session.commit()
        if output_key:
            try:
                await store.delete(output_key)
            except Exception:
                log.exception("could not delete stored object %s of export %s", output_key, export.id)

    async def _cancel(self, export: m.Export) -> bool:
        """The conditional UPDATE: true only if this call moved the export to cancelled."""
        session = self.repository.session
        result = await session.execute(
            update(m.Export)
            .where(
                m.Export.id == export.id,
                m.Export.user_id == export.user_id,
                m.Export.status.in_(ACTIVE),
            )
            .values(
                status=ExportStatus.CANCELLED,
                waiting_code=None,
                wait_until=None,
                finished_at=func.now(),
                updated_at=func.now(),
            )
            .returning(m.Export.id)
        )
        cancelled = result.scalar_one_or_none() is not None
        await session.commit()
        if cancelled:
            await session.refresh(export)  # status, finished_at: the API answers with the row
        return cancelled


def _history(
    owner: UUID | None, status: ExportStatus | None, video_id: UUID | None
) -> Select[tuple[m.Export]]:
    query = select(m.Export)
    if owner is not None:
        query = query.where(m.Export.user_id == owner)
    if status is not None:
        query = query.where(m.Export.status == status)
    if video_id is not None:
        query = query.where(m.Export.video_id == video_id)
    return query


def _wait_until(route: Route, gpu_wait_s: float) -> dt.datetime | None:
    """When a waiting `gpu` export gives up on a GPU worker: the reconciler moves it to the CPU
    queue once it has waited GPU_WAIT_S (gpu_worker.routing.reroute_waiting)."""
    if route.waiting is None:
        return None
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=gpu_wait_s)


async def _abort_job(export_id: UUID, queue: Queue) -> None:
    """Abort the SAQ job; a worker mid-render sees the abort and stops within a second or two."""
    try:
        job = await queue.job(str(export_id))
        if job is not None:
            await queue.abort(job, "cancelled")
    except Exception:
        log.exception("could not abort the job of export %s", export_id)
