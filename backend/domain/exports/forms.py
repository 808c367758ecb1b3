"""The export dialog's form: parse it, check it with the API's own rules (ExportService and the
render contract), and turn every refusal into a message next to its field."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

import msgspec

from backend.domain.exports.schemas import ExportCreate
from backend.domain.exports.services import to_render_request
from backend.domain.exports.views import EXPORT_OPTIONS

FIELDS = ("segments", "resolution", "quality", "format", "codec", "mode", "encoder")
"""The request's fields, named as the API names them; each has its `#error-{field}` slot in the form."""
_SEGMENT_FIELD = re.compile(r"segments\[(\d+)\]")


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
    """The editor's own rule on top of the contract's: the API allows a span twice, but in the
    dialog that is always a slip (a span marked twice), so it is refused here. No segments means
    the whole video here as in the API (one documented rule; the dialog's summary says so)."""
    render = to_render_request(data)
    ordered = sorted(enumerate(render.segments, start=1), key=lambda item: (item[1].start, item[1].end))
    for (i, first), (j, second) in itertools.pairwise(ordered):
        if second.start < first.end:
            a, b = sorted((i, j))
            raise FormError("segments", f"Segments {a} and {b} overlap; remove or shorten one of them.")
