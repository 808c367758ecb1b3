"""JSON endpoints for exports: request, read, history, download, cancel, cancel-and-delete; signed
local files.

Every id is scoped to its owner, so another user's export answers exactly like a missing one (404).
Body errors on this API are problem+json with `errors: [{"field": "body.segments[1].end", "message"}]`,
and a 422 whether the shape check or the render contract found them (400 is a body that cannot be read).
"""

from __future__ import annotations

import mimetypes
import re
from typing import Annotated, Any, Literal
from uuid import UUID

from advanced_alchemy.exceptions import NotFoundError
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import (
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    Parameter,
    QueryParameter,
    SkipValidation,
)
from litestar.response import Redirect, Stream
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
    HTTP_206_PARTIAL_CONTENT,
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
)
from redis.asyncio import Redis

from backend.db import models as m
from backend.db.hotpath import Row
from backend.domain.exports.deps import provide_export_service
from backend.domain.exports.schemas import ExportCreate, ExportOut, ExportPage
from backend.domain.exports.services import (
    IDEMPOTENCY_KEY_MAX,
    ExportConflict,
    ExportService,
    check_rate_limit,
)
from backend.domain.farm.guards import ensure_operator
from backend.lib.auth import CurrentUser
from backend.lib.deps import CurrentUserDep, SettingsDep, StoreDep
from backend.lib.openapi import AUTHENTICATED, problems
from gpu_worker.contract import ExportStatus
from gpu_worker.fallback import WAITING_REASONS, FallbackCode, WaitingCode
from gpu_worker.routing import ExportQueues
from gpu_worker.store import LocalStore, Store, content_disposition

QueueDep = NamedDependency[SkipValidation[ExportQueues]]
RedisDep = NamedDependency[SkipValidation[Redis]]
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def provide_queue(state: State) -> ExportQueues:
    """Both export queues (the GPU and the CPU one) and the Redis client of the worker registry,
    which routing reads; taken from the app state on each request."""
    return ExportQueues(cpu=state.queue, gpu=state.gpu_queue, redis=state.redis, settings=state.settings.core)


def provide_redis(state: State) -> Redis:
    return state.redis


def export_location(export_id: UUID) -> str:
    return f"/api/exports/{export_id}"


def export_out(export: m.Export | Row, viewer: CurrentUser) -> ExportOut:
    """The export as `viewer` may see it: where it was queued and rendered is for operators."""
    completed = export.status == ExportStatus.COMPLETED
    waiting = WaitingCode(export.waiting_code) if export.waiting_code else None
    return ExportOut(
        id=export.id,
        video_id=export.video_id,
        user_id=export.user_id,
        status=export.status,
        progress=export.progress,
        phase=export.phase,
        resolution=export.resolution,
        quality=export.quality,
        format=export.format,
        codec=export.codec,
        mode=export.mode,
        segments=export.segments["request"]["segments"],
        clips=export.segments["clips"],
        size_bytes=export.size_bytes,
        duration=export.duration,
        encoder_requested=export.encoder_requested,
        encoder_used=export.encoder_used,
        fallback_code=FallbackCode(export.fallback_code) if export.fallback_code else None,
        fallback_reason=export.fallback_reason,
        waiting_code=waiting,
        waiting_reason=WAITING_REASONS[waiting] if waiting else None,
        wait_until=export.wait_until,
        queue_name=export.queue_name if viewer.is_operator else None,
        worker_id=export.worker_id if viewer.is_operator else None,
        attempt=export.attempt,
        error=export.error,
        created_at=export.created_at,
        started_at=export.started_at,
        finished_at=export.finished_at,
        download_url=f"{export_location(export.id)}/download" if completed else None,
    )


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The half-open span one `Range: bytes=…` asks for; None means "send it all" (absent, malformed,
    or several ranges, which RFC 9110 lets a server ignore). Unsatisfiable ranges raise 416."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if first and last and int(last) < int(first):
        return None
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if start >= end:
        raise HTTPException(
            status_code=HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
            detail="range not satisfiable",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


async def stored_file(request: Request[Any, Any, Any], store: Store, key: str, filename: str) -> Stream:
    """Stream a stored object as an attachment, honouring one byte range (resumed downloads, seeking).

    Litestar's `File` response has no Range support (2.25), so this streams `store.get_stream`.
    """
    size = await store.size(key)
    if size is None:
        raise NotFoundException("the exported file is missing")
    span = byte_range(request.headers.get("range"), size)
    start, end = span or (0, size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(filename),
        "Content-Length": str(end - start),
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return Stream(
        store.get_stream(key, start, end),
        status_code=HTTP_206_PARTIAL_CONTENT if span else HTTP_200_OK,
        media_type=mimetypes.guess_type(filename)[0] or "application/octet-stream",
        headers=headers,
    )


NOT_FOUND = "no such export (or video) for this user"


def _page(description: str) -> ResponseSpec:
    return ResponseSpec(str, description=description, media_type="text/html", generate_examples=False)


def _file(description: str) -> ResponseSpec:
    """A stored file: video/mp4, video/webm, video/quicktime or application/zip (Content-Disposition
    names it)."""
    return ResponseSpec(bytes, description=description, media_type="*/*", generate_examples=False)


class ExportController(Controller):
    path = "/api"
    tags = ["exports"]
    security = AUTHENTICATED
    dependencies = {
        "exports": Provide(provide_export_service),
        "queue": Provide(provide_queue, sync_to_thread=False),
        "redis": Provide(provide_redis, sync_to_thread=False),
    }

    @post(
        "/videos/{video_id:uuid}/export",
        operation_id="requestExport",
        status_code=HTTP_202_ACCEPTED,
        description=(
            "Validate the request, record the export (pending) and queue the render. Answers 202 with the "
            "export and `Location`. With `Idempotency-Key`, a retry of the same request answers 200 with the "
            "export it created first (never a second render); the same key with a different request is 422."
        ),
        responses={
            200: ResponseSpec(ExportOut, description="an Idempotency-Key replay: the earlier export"),
            **problems(
                400,
                401,
                403,
                413,
                422,
                503,
                described={
                    404: NOT_FOUND,
                    409: "the video is not ready",
                    429: "too many active exports or requests; see Retry-After",
                },
            ),
        },
    )
    async def request_export(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
        data: JSONBody[ExportCreate],
        queue: QueueDep,
        redis: RedisDep,
        settings: SettingsDep,
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                description="any string you choose per logical request, e.g. a UUID",
                schema_extra={"minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
            ),
        ] = None,
    ) -> Response[ExportOut]:
        await check_rate_limit(redis, current_user.id, settings.export_requests_per_minute)
        result = await exports.request(
            current_user,
            video_id,
            data,
            idempotency_key,
            queue,
            max_active=settings.max_active_exports,
            max_output=settings.max_output_seconds,
        )
        return Response(
            export_out(result.export, current_user),
            status_code=HTTP_202_ACCEPTED if result.created else HTTP_200_OK,
            headers={"Location": export_location(result.export.id)},
        )

    @get(
        "/exports",
        operation_id="listExports",
        description=(
            "History, newest first, in keyset pages. `scope=all` lists every user's exports: operators "
            "only, anyone else gets 404."
        ),
        responses=problems(
            400, 401, 422, 503, described={404: "`scope=all` from a caller who is not an operator"}
        ),
    )
    async def list_exports(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        status: FromQuery[ExportStatus | None] = None,
        video_id: FromQuery[UUID | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
        # Not named `scope`: Litestar reserves that name for the ASGI scope.
        listed: Annotated[Literal["own", "all"], QueryParameter(name="scope")] = "own",
    ) -> ExportPage:
        owner: UUID | None = current_user.id
        if listed == "all":
            ensure_operator(current_user)
            owner = None
        rows, next_cursor = await exports.page(
            owner, status=status, video_id=video_id, limit=limit, cursor=cursor
        )
        items = [export_out(e, current_user) for e in rows]
        return ExportPage(items=items, limit=limit, next_cursor=next_cursor)

    @get(
        "/exports/{export_id:uuid}",
        operation_id="getExport",
        responses=problems(400, 401, 503, described={404: NOT_FOUND}),
    )
    async def get_export(
        self, state: State, current_user: CurrentUserDep, export_id: FromPath[UUID]
    ) -> ExportOut:
        # The endpoint clients poll: read on the hot path (backend.db.hotpath), not the ORM.
        export = await state.hotpath.owned_export(current_user.id, export_id)
        if export is None:
            raise NotFoundError("export not found")
        return export_out(export, current_user)

    @get(
        "/exports/{export_id:uuid}/download",
        operation_id="downloadExport",
        description=(
            "S3: 302 to a short-lived presigned URL. Local store: the file itself (Range supported). "
            "Either way named by what the file holds: `holiday clip (272p).mp4` (the output's height; "
            "presets never upscale, so 720p of a 640x272 source is 272p) or `holiday clip (272p clips).zip`."
        ),
        responses={
            200: _file("the file (local store)"),
            206: _file("the requested byte range (local store)"),
            302: ResponseSpec(None, description="redirect to a presigned URL (S3)"),
            **problems(
                400,
                401,
                503,
                described={
                    404: NOT_FOUND,
                    409: "the export is not completed",
                    416: "the range is outside the file",
                },
            ),
        },
    )
    async def download_export(
        self,
        request: Request[Any, Any, Any],
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        export_id: FromPath[UUID],
        store: StoreDep,
    ) -> Response[Any]:
        export = await exports.get_owned(current_user.id, export_id)
        if export.status != ExportStatus.COMPLETED or export.output_key is None:
            raise ExportConflict(detail=f"export is not completed (status: {export.status})")
        name = await exports.output_filename(export)
        if isinstance(store, LocalStore):
            return await stored_file(request, store, export.output_key, name)
        return Redirect(await store.download_url(export.output_key, filename=name))

    @post(
        "/exports/{export_id:uuid}/cancel",
        operation_id="cancelExport",
        status_code=HTTP_202_ACCEPTED,
        description=(
            "Cancel the render if it is pending or processing and keep the export in history as "
            "`cancelled` (DELETE also removes it): the worker stops within about two seconds and "
            "cleans up. Cancelling a cancelled export answers it unchanged."
        ),
        responses=problems(
            400, 401, 403, 503, described={404: NOT_FOUND, 409: "the export already completed or failed"}
        ),
    )
    async def cancel_export(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        export_id: FromPath[UUID],
        queue: QueueDep,
        redis: RedisDep,
    ) -> ExportOut:
        export = await exports.cancel(current_user.id, export_id, queue, redis)
        if export.status != ExportStatus.CANCELLED:
            raise ExportConflict(detail=f"export already finished (status: {export.status})")
        return export_out(export, current_user)

    @delete(
        "/exports/{export_id:uuid}",
        operation_id="deleteExport",
        status_code=HTTP_204_NO_CONTENT,
        description="Cancel the render if it is pending or processing, then delete its files and record.",
        responses=problems(400, 401, 403, 503, described={404: NOT_FOUND}),
    )
    async def delete_export(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        export_id: FromPath[UUID],
        store: StoreDep,
        queue: QueueDep,
        redis: RedisDep,
    ) -> None:
        await exports.cancel_and_delete(current_user.id, export_id, store, queue, redis)


class SignedFileController(Controller):
    """The local store's signed download links: the signature is the credential, so no session or login."""

    tags = ["exports"]

    @get(
        "/files/{key:path}",
        operation_id="downloadSignedFile",
        exclude_from_auth=True,
        exclude_from_csrf=True,
        skip_session=True,
        description="Serves a link made by the local store's `download_url`; 403 when forged or expired.",
        responses={
            200: _file("the file"),
            206: _file("the requested byte range"),
            # A link a browser follows (not under /api): its errors are pages, like the UI's.
            403: _page("bad or expired signature"),
            404: _page("the file is gone"),
            416: _page("the range is outside the file"),
            422: _page("`exp`, `name` or `sig` is missing"),
        },
    )
    async def signed_file(
        self,
        request: Request[Any, Any, Any],
        store: StoreDep,
        key: FromPath[str],
        exp: FromQuery[str],
        name: FromQuery[str],
        sig: FromQuery[str],
    ) -> Stream:
        key = key.lstrip("/")
        if not isinstance(store, LocalStore) or not store.verify_download(key, exp, name, sig):
            raise PermissionDeniedException("this download link is invalid or has expired")
        return await stored_file(request, store, key, name)
