"""How exports look on the pages: the dialog's choices (read from the render contract, labels added)
and one `ExportView` per export that cards and history rows render from, the page loads and the live
socket (`ui_ws.py`) alike, so the two can never disagree on the markup. Both read the export's
progress message (`messages.export_message`), which carries the row's fields."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from litestar.plugins.jinja import JinjaTemplateEngine
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.db import models as m
from backend.domain.exports.messages import export_message
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
from gpu_worker.fallback import FallbackCode
from gpu_worker.registry import live_workers
from gpu_worker.routing import takes_gpu_jobs
from gpu_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


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
    gpu_note: GpuNote | None
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
    """The export as shown: its progress message (`live`, a newer one than the row, carries the
    row's fields too; else the row's own), plus what never changes (settings, creation time)."""
    message = live or export_message(export)
    status = message.status
    running = status not in TERMINAL_STATUSES
    encoder_used = message.encoder_used
    return ExportView(
        id=export.id,
        video_id=export.video_id,
        video_name=video_name,
        status=status,
        percent=100 if status == ExportStatus.COMPLETED else message.percent,
        phase=message.phase if running else None,
        fps=f"{message.fps:.0f} fps" if message.fps > 0 and running else None,
        eta=_eta(message.eta_s) if message.eta_s is not None and running else None,
        encoder_badge=("GPU" if "nvenc" in encoder_used else "CPU") if encoder_used else None,
        encoder_used=encoder_used,
        gpu_note=gpu_note(export.encoder_requested, message),
        error=message.error,
        settings=_settings(export),
        created=export.created_at,
        size=_size(export.size_bytes) if status == ExportStatus.COMPLETED else None,
    )


@dataclass(frozen=True, slots=True)
class GpuNote:
    """Why the GPU does not render an export (yet): `info` when the CPU is a normal outcome (an `auto`
    export), `warning` when a `gpu` request waits or was not honoured, or a GPU broke mid-render."""

    kind: Literal["info", "warning"]
    code: str
    text: str


def gpu_note(encoder_requested: str, message: ProgressMessage) -> GpuNote | None:
    """Decided on typed values only: the encoder choice and the waiting or fallback code."""
    if message.waiting_code is not None and message.status == ExportStatus.PENDING:
        until = f" until {message.wait_until.astimezone(dt.UTC):%H:%M} UTC" if message.wait_until else ""
        text = f"Waiting for a GPU worker{until}: none is online; then it renders on the CPU"
        return GpuNote("warning", message.waiting_code, text)
    if message.fallback_code is None:
        return None
    tense = {ExportStatus.COMPLETED: "Rendered on the CPU"}.get(message.status, "Renders on the CPU")
    if message.status in (ExportStatus.FAILED, ExportStatus.CANCELLED):
        tense = "On the CPU"
    if encoder_requested == EncoderChoice.GPU:
        return GpuNote(
            "warning",
            message.fallback_code,
            f"GPU requested, {tense[0].lower()}{tense[1:]}: {message.fallback_reason}",
        )
    kind: Literal["info", "warning"] = (
        "warning" if message.fallback_code == FallbackCode.GPU_FAILED else "info"
    )
    return GpuNote(kind, message.fallback_code, f"{tense}: {message.fallback_reason}")


async def encoder_note(redis: Redis, settings: WorkerSettings) -> str | None:
    """What the export dialog says under Encoder (shown while GPU is chosen) when no GPU worker is
    online: the same registry routing reads. A hint only, so a registry that cannot be read (Redis
    down) leaves it out rather than the page."""
    try:
        workers = await live_workers(redis)
    except (RedisError, OSError):
        log.warning("could not read the worker registry for the export dialog", exc_info=True)
        return None
    if any(takes_gpu_jobs(worker, settings) for worker in workers):
        return None
    return (
        f"No GPU worker is online now: a GPU export waits up to {_duration(settings.gpu_wait_s)}, "
        "then renders on the CPU."
    )


def _duration(seconds: float) -> str:
    if seconds < 60 or seconds % 60:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min"


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
