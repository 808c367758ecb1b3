"""Export pages (htmx): the export dialog's submit, Cancel / Re-run / Delete, and the history page.

Every request goes through the same `ExportService` and render contract as the JSON API, so the
rules live in one place; this module only turns their errors into inline form messages. Cards and
history rows are rendered from one `ExportView`, by the same partials the live socket
(`ui_ws.py`) renders, so a page load and a live update can never disagree on the markup.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from dataclasses import dataclass, field
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

from backend.db import models as m
from backend.domain.exports.controllers import QueueDep, RedisDep, provide_queue, provide_redis
from backend.domain.exports.deps import provide_export_service
from backend.domain.exports.schemas import ExportCreate
from backend.domain.exports.services import (
    ExportConflict,
    ExportService,
    UnprocessableExport,
    check_rate_limit,
    encode_cursor,
    to_render_request,
)
from backend.domain.videos.deps import provide_video_service
from backend.domain.videos.services import VideoService
from backend.lib.deps import SettingsDep, StoreDep
from gpu_worker.contract import (
    FORMAT_CODECS,
    TERMINAL_STATUSES,
    Codec,
    EncoderChoice,
    ExportStatus,
    Format,
    Mode,
    ProgressMessage,
    Quality,
    RenderRequest,
    Resolution,
)

HISTORY_PAGE_SIZE = 20
CREATED_EVENT = "export-created"
"""Triggered (HX-Trigger) when the dialog started an export; the dialog's script closes it then."""
FIELDS = ("segments", "resolution", "quality", "format", "codec", "mode", "encoder")
"""The request's fields, named as the API names them; each has its `#error-{field}` slot in the form."""
_SEGMENT_FIELD = re.compile(r"segments\[(\d+)\]")


# ---------------------------------------------------------------------------------------------
# The dialog's choices, read from the render contract (labels are the only thing added here).


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: str


_RESOLUTION_LABELS = {Resolution.SOURCE: "Source (no scaling)", Resolution.P2160: "2160p (4K)"}
_CODEC_LABELS = {
    Codec.H264: "H.264",
    Codec.HEVC: "HEVC (H.265)",
    Codec.AV1: "AV1",
    Codec.VP9: "VP9",
    Codec.PRORES: "ProRes",
}
_MODE_LABELS = {Mode.SINGLE: "Single file", Mode.CLIPS: "Separate clips (ZIP)"}
_ENCODER_LABELS = {EncoderChoice.AUTO: "Auto", EncoderChoice.GPU: "GPU", EncoderChoice.CPU: "CPU"}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What the export dialog offers, with the contract's defaults preselected."""

    resolutions: tuple[Choice, ...]
    qualities: tuple[Choice, ...]
    formats: tuple[Choice, ...]
    codecs: tuple[Choice, ...]
    modes: tuple[Choice, ...]
    encoders: tuple[Choice, ...]
    format_codecs: dict[str, list[str]]
    """Which codecs each format allows, first the default; the dialog's script narrows Codec with it."""
    defaults: dict[str, str]

    @property
    def format_codecs_json(self) -> str:
        return json.dumps(self.format_codecs)

    @property
    def codec_labels_json(self) -> str:
        return json.dumps({c.value: c.label for c in self.codecs})

    def codecs_for(self, format: str, current: str | None = None) -> tuple[Choice, ...]:
        """The codecs `format` allows, in the contract's order (its default first); all of them for
        an unknown format, and the `current` one too when it is not allowed (its error explains it)."""
        allowed = self.format_codecs.get(format)
        if allowed is None:
            return self.codecs
        wanted = [*allowed, *([current] if current and current not in allowed else [])]
        by_value = {c.value: c for c in self.codecs}
        return tuple(by_value[v] for v in wanted if v in by_value)

    def label(self, kind: str, value: str | None) -> str:
        for choice in getattr(self, kind):
            if choice.value == value:
                return str(choice.label)
        return value or ""


def _export_options() -> ExportOptions:
    default = RenderRequest()
    return ExportOptions(
        resolutions=tuple(Choice(r.value, _RESOLUTION_LABELS.get(r, r.value)) for r in Resolution),
        qualities=tuple(Choice(q.value, q.value.capitalize()) for q in Quality),
        formats=tuple(Choice(f.value, f.value.upper()) for f in Format),
        codecs=tuple(Choice(c.value, _CODEC_LABELS[c]) for c in Codec),
        modes=tuple(Choice(mo.value, _MODE_LABELS[mo]) for mo in Mode),
        encoders=tuple(Choice(e.value, _ENCODER_LABELS[e]) for e in EncoderChoice),
        format_codecs={f.value: [c.value for c in codecs] for f, codecs in FORMAT_CODECS.items()},
        defaults={
            "resolution": default.resolution,
            "quality": default.quality,
            "format": default.format,
            "codec": default.video_codec,
            "mode": default.mode,
            "encoder": default.encoder,
        },
    )


EXPORT_OPTIONS = _export_options()


# ---------------------------------------------------------------------------------------------
# One view of an export for cards and history rows: the row, optionally overlaid by live progress.


@dataclass(frozen=True, slots=True)
class ExportView:
    id: UUID
    video_id: UUID
    video_name: str
    status: str
    percent: int
    phase: str | None
    fps: str | None
    eta: str | None
    encoder_badge: str | None
    encoder_used: str | None
    fallback_reason: str | None
    error: str | None
    settings: str
    created: dt.datetime
    size: str | None

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def completed(self) -> bool:
        return self.status == ExportStatus.COMPLETED

    @property
    def created_label(self) -> str:
        return self.created.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def created_key(self) -> str:
        """`created` at fixed width in UTC, so the page's script orders exports by comparing strings."""
        return self.created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def export_view(export: m.Export, video_name: str, live: ProgressMessage | None = None) -> ExportView:
    """The row as shown; `live` (a newer progress snapshot) supplies status, percent, phase, fps, ETA."""
    status = live.status if live else export.status
    encoder_used = (live.encoder_used if live else None) or export.encoder_used
    phase = (live.phase if live else export.phase) if status not in TERMINAL_STATUSES else None
    return ExportView(
        id=export.id,
        video_id=export.video_id,
        video_name=video_name,
        status=status,
        percent=100 if status == ExportStatus.COMPLETED else (live.percent if live else export.progress),
        phase=phase,
        fps=f"{live.fps:.0f} fps" if live and live.fps > 0 and status not in TERMINAL_STATUSES else None,
        eta=_eta(live.eta_s) if live and live.eta_s is not None and status not in TERMINAL_STATUSES else None,
        encoder_badge=("GPU" if "nvenc" in encoder_used else "CPU") if encoder_used else None,
        encoder_used=encoder_used,
        fallback_reason=(live.fallback_reason if live else None) or export.fallback_reason,
        error=(live.error if live else None) or export.error,
        settings=_settings(export),
        created=export.created_at,
        size=_size(export.size_bytes) if status == ExportStatus.COMPLETED else None,
    )


def _settings(export: m.Export) -> str:
    o = EXPORT_OPTIONS
    parts = [
        o.label("resolutions", export.resolution),
        o.label("qualities", export.quality),
        f"{o.label('formats', export.format)} · {o.label('codecs', export.codec)}",
        o.label("modes", export.mode),
        f"encoder {o.label('encoders', export.encoder_requested)}",
    ]
    return " · ".join(parts)


def _eta(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s left"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s left"
    return f"{s // 3600} h {s % 3600 // 60:02d} min left"


def _size(size_bytes: int | None) -> str | None:
    if size_bytes is None:
        return None
    if size_bytes < 1_000_000:
        return f"{size_bytes / 1000:.0f} kB"
    return f"{size_bytes / 1_000_000:.1f} MB"


def register_templates(engine: JinjaTemplateEngine) -> None:
    """Template globals: the dialog's choices (so the contract is read in one place) and the view
    builder, which lets the video page's cards render straight from its `exports` rows."""
    engine.engine.globals["export_options"] = EXPORT_OPTIONS
    engine.engine.globals["export_view"] = export_view


# ---------------------------------------------------------------------------------------------
# The dialog's form: parse, check, and turn every refusal into a message next to its field.


class FormError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class ExportForm:
    """What the dialog submitted (kept to re-render it) and what was wrong with it."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    """A refusal of the whole request (too many exports, video not ready), shown above the buttons."""

    @classmethod
    def from_data(cls, data: dict[str, str]) -> ExportForm:
        values = {**EXPORT_OPTIONS.defaults, **{k: data[k] for k in FIELDS if data.get(k)}}
        if not data.get("codec"):  # the format's default codec, as the contract fills it
            values["codec"] = EXPORT_OPTIONS.format_codecs.get(values["format"], [""])[0]
        return cls(values)

    def request(self) -> ExportCreate:
        """The API's request shape; its own checks (types, enums) name the field they reject."""
        try:
            segments = json.loads(self.values.get("segments") or "[]")
        except json.JSONDecodeError as exc:
            raise FormError(
                "segments", "The segment list could not be read; mark the segments again."
            ) from exc
        payload = {k: v for k, v in self.values.items() if k != "segments"}
        try:
            return msgspec.convert({**payload, "segments": segments}, ExportCreate)
        except msgspec.ValidationError as exc:
            where = str(exc).partition(" - at `$.")[2].rstrip("`")
            name = re.split(r"[.\[]", where, maxsplit=1)[0] or "segments"
            if name == "segments":
                raise FormError("segments", _segment_message(where, str(exc))) from exc
            raise FormError(name, f"Choose one of the offered {name} options.") from exc

    def refuse(self, field: str, message: str) -> None:
        name = re.split(r"[.\[]", field.removeprefix("body."), maxsplit=1)[0]
        name = name if name in FIELDS else "segments"
        self.errors[name] = _segment_message(field, message) if name == "segments" else message


def _segment_message(where: str, message: str) -> str:
    message = message.partition(" - at `")[0]
    match = _SEGMENT_FIELD.search(where)
    if match is None:
        return message[:1].upper() + message[1:]
    part = where.rpartition(".")[2]
    subject = f"{part} " if part in ("start", "end") else ""
    return f"Segment {int(match.group(1)) + 1}: {subject}{message}"


def check_timeline(data: ExportCreate) -> None:
    """The editor's own rules on top of the contract's: the API reads no segments as the whole video
    and allows a span twice, but in the dialog those are always a slip (nothing marked, or a span
    marked twice), so they are refused here before the contract's checks."""
    render = to_render_request(data)
    if not render.segments:
        raise FormError("segments", "Mark at least one segment (Mark in, then Mark out) to export.")
    ordered = sorted(enumerate(render.segments, start=1), key=lambda item: (item[1].start, item[1].end))
    for (i, first), (j, second) in itertools.pairwise(ordered):
        if second.start < first.end:
            a, b = sorted((i, j))
            raise FormError("segments", f"Segments {a} and {b} overlap; remove or shorten one of them.")


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
        current_user: NamedDependency[m.User],
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
                current_user, video.id, create, None, queue, max_active=settings.max_active_exports
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
            html = _render(request, "partials/export_card.html", e=view) + _render(
                request, "partials/export_form.html", v=video, form=ExportForm(form.values), oob=True
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
        return Template(
            "partials/export_form.html", context={"v": video, "form": form}, status_code=status_code
        )

    @post("/exports/{export_id:uuid}/cancel")
    async def cancel(
        self,
        exports: NamedDependency[ExportService],
        current_user: NamedDependency[m.User],
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
        current_user: NamedDependency[m.User],
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
                current_user, export.video_id, create, None, queue, max_active=settings.max_active_exports
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
        current_user: NamedDependency[m.User],
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
        current_user: NamedDependency[m.User],
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
