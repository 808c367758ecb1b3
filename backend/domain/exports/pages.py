"""Export pages (htmx): the export dialog's submit, Cancel / Re-run / Delete, and the history page.

Every request goes through the same `ExportService` and render contract as the JSON API, so the
rules live in one place (forms.py turns their errors into inline messages); cards and history rows
come from views.py, shared with the live socket.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, cast
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.exceptions import ClientException, TooManyRequestsException
from litestar.params import FromPath, FromQuery, Parameter, URLEncodedBody
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template

from backend.domain.exports.controllers import QueueDep, RedisDep, provide_queue, provide_redis
from backend.domain.exports.deps import provide_export_service
from backend.domain.exports.forms import ExportForm, FormError, check_timeline
from backend.domain.exports.schemas import ExportCreate
from backend.domain.exports.services import (
    ExportConflict,
    ExportService,
    UnprocessableExport,
    check_rate_limit,
    encode_cursor,
)
from backend.domain.exports.views import encoder_note, export_view
from backend.domain.videos.deps import provide_video_service
from backend.domain.videos.services import VideoService
from backend.lib.deps import CurrentUserDep, SettingsDep, StoreDep
from gpu_worker.contract import ExportStatus

HISTORY_PAGE_SIZE = 20
CREATED_EVENT = "export-created"
"""Triggered (HX-Trigger) when the dialog started an export; the dialog's script closes it then."""


class View(StrEnum):
    """Which element an action answers with: the video page's card or the history page's row."""

    CARD = "card"
    ROW = "row"


def _render(request: Request[Any, Any, Any], template: str, **context: Any) -> str:
    engine = cast(JinjaTemplateEngine, request.app.template_engine)
    return engine.get_template(template).render(**context)


def _status_filter(value: str | None) -> ExportStatus | None:
    if not value:
        return None
    try:
        return ExportStatus(value)
    except ValueError as exc:
        raise ClientException(detail=f"unknown status {value!r}") from exc


def _video_filter(value: str | None) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError as exc:
        raise ClientException(detail="not a video id") from exc


class ExportPages(Controller):
    include_in_schema = False
    dependencies = {
        "exports": Provide(provide_export_service),
        "videos": Provide(provide_video_service),
        "queue": Provide(provide_queue, sync_to_thread=False),
        "redis": Provide(provide_redis, sync_to_thread=False),
    }

    @post("/videos/{video_id:uuid}/exports")
    async def start_export(
        self,
        request: Request[Any, Any, Any],
        exports: NamedDependency[ExportService],
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
        data: URLEncodedBody[dict[str, str]],
        queue: QueueDep,
        redis: RedisDep,
        settings: SettingsDep,
    ) -> Response[str] | Template:
        """The dialog's submit: the new card (into #exports, the dialog closes), else the form again
        with each refusal next to its field (422), or a whole-request refusal (409, 429)."""
        video = await videos.get_owned(current_user.id, video_id)
        form = ExportForm.from_data(data)
        status_code = 422
        try:
            create = form.request()
            check_timeline(create)
            await check_rate_limit(redis, current_user.id, settings.export_requests_per_minute)
            result = await exports.request(
                current_user,
                video.id,
                create,
                None,
                queue,
                max_active=settings.max_active_exports,
                max_output=settings.max_output_seconds,
            )
        except FormError as exc:
            form.errors[exc.field] = exc.message
        except UnprocessableExport as exc:
            for error in exc.extra or []:
                form.refuse(error["field"], error["message"])
            if not form.errors:
                form.problem = exc.detail
        except (TooManyRequestsException, ExportConflict) as exc:
            form.problem = exc.detail[:1].upper() + exc.detail[1:] + "."
            status_code = exc.status_code
        else:
            view = export_view(result.export, video.original_filename)
            fresh = ExportForm(form.values)
            note = await encoder_note(redis, queue.settings)
            html = _render(request, "partials/export_card.html", e=view) + _render(
                request, "partials/export_form.html", v=video, form=fresh, oob=True, encoder_note=note
            )
            return Response(
                html,
                media_type=MediaType.HTML,
                status_code=201,
                headers={
                    "HX-Retarget": "#exports",
                    "HX-Reswap": "afterbegin",
                    "HX-Trigger": CREATED_EVENT,
                },
            )
        note = await encoder_note(redis, queue.settings)
        return Template(
            "partials/export_form.html",
            context={"v": video, "form": form, "encoder_note": note},
            status_code=status_code,
        )

    @post("/exports/{export_id:uuid}/cancel")
    async def cancel(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        export_id: FromPath[UUID],
        queue: QueueDep,
        redis: RedisDep,
        view: FromQuery[View] = View.CARD,
    ) -> Template:
        """Cancel and keep the export (unlike the API's DELETE): the element again, now cancelled."""
        export = await exports.cancel(current_user.id, export_id, queue, redis)
        name = await exports.original_filename(export)
        template = "partials/history_row.html" if view is View.ROW else "partials/export_card.html"
        return Template(template, context={"e": export_view(export, name)}, status_code=200)

    @post("/exports/{export_id:uuid}/rerun")
    async def rerun(
        self,
        request: Request[Any, Any, Any],
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        export_id: FromPath[UUID],
        queue: QueueDep,
        redis: RedisDep,
        settings: SettingsDep,
    ) -> Response[str]:
        """A new export of the same video with the stored request (segments, presets, encoder choice);
        its row goes to the top of the history table, or a refusal into the page's status line."""
        export = await exports.get_owned(current_user.id, export_id)
        create = msgspec.convert(export.segments["request"], ExportCreate)
        try:
            await check_rate_limit(redis, current_user.id, settings.export_requests_per_minute)
            result = await exports.request(
                current_user,
                export.video_id,
                create,
                None,
                queue,
                max_active=settings.max_active_exports,
                max_output=settings.max_output_seconds,
            )
        except (TooManyRequestsException, ExportConflict, UnprocessableExport) as exc:
            return Response(
                exc.detail[:1].upper() + exc.detail[1:] + ".",
                media_type=MediaType.HTML,
                status_code=exc.status_code,
                headers={"HX-Retarget": "#history-message", "HX-Reswap": "innerHTML"},
            )
        row = export_view(result.export, await exports.original_filename(result.export))
        return Response(
            _render(request, "partials/history_row.html", e=row),
            media_type=MediaType.HTML,
            status_code=201,
            headers={"HX-Retarget": "#history-body", "HX-Reswap": "afterbegin"},
        )

    @delete("/exports/{export_id:uuid}", status_code=200)
    async def remove(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        export_id: FromPath[UUID],
        store: StoreDep,
        queue: QueueDep,
        redis: RedisDep,
    ) -> Response[str]:
        """Cancel if running, delete the record and its file; the empty 200 swaps the row away
        (htmx does not swap a 204)."""
        await exports.cancel_and_delete(current_user.id, export_id, store, queue, redis)
        return Response("", media_type=MediaType.HTML)

    @get("/exports")
    async def history(
        self,
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        status: FromQuery[str | None] = None,
        video_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        newer: FromQuery[str | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = HISTORY_PAGE_SIZE,
    ) -> Template:
        """Newest first, in keyset pages both ways: `cursor` pages are older than it, `newer` pages
        newer; filters apply through the selects (htmx swaps #history-results and pushes the URL)."""
        wanted_status, wanted_video = _status_filter(status), _video_filter(video_id)
        filters = {"status": wanted_status or "", "video_id": str(wanted_video or "")}
        names = await exports.video_names(current_user.id)
        if newer:
            rows, more_newer = await exports.newer_page(
                current_user.id, newer, status=wanted_status, video_id=wanted_video, limit=limit
            )
            older_cursor = encode_cursor(rows[-1]) if rows else None
        else:
            rows, older_cursor = await exports.page(
                current_user.id,
                status=wanted_status,
                video_id=wanted_video,
                limit=limit,
                cursor=cursor,
            )
            more_newer = cursor is not None
        query = {k: v for k, v in {**filters, "limit": limit}.items() if v and v != HISTORY_PAGE_SIZE}
        newer_url = (
            f"/exports?{urlencode({**query, 'newer': encode_cursor(rows[0])})}"
            if rows and more_newer
            else None
        )
        older_url = f"/exports?{urlencode({**query, 'cursor': older_cursor})}" if older_cursor else None
        return Template(
            "exports.html",
            context={
                "user": current_user,
                "rows": [export_view(e, names.get(e.video_id, "video")) for e in rows],
                "statuses": list(ExportStatus),
                "videos": names,
                "filters": filters,
                "newer_url": newer_url,
                "older_url": older_url,
            },
        )
