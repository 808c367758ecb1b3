"""Clips mode: each segment rendered to its own file and streamed into a ZIP, one clip on disk at a time."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from gpu_worker.contract import Segment
from gpu_worker.engine.encode import FileResult, RenderJob, encode_file
from gpu_worker.engine.timeline import Span
from gpu_worker.engine.zipstream import ZipStreamWriter


@dataclass(frozen=True, slots=True)
class ClipsResult:
    entries: tuple[str, ...]
    result: FileResult


def clip_name(number: int, segment: Segment, extension: str) -> str:
    """E.g. clip-001_00-00-05.000-00-00-12.500.mp4 (1-based number, requested start and end)."""
    return f"clip-{number:03d}_{_stamp(segment.start)}-{_stamp(segment.end)}.{extension}"


def _stamp(seconds: Fraction) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}-{minutes:02d}-{rest // 1000:02d}.{rest % 1000:03d}"


def render_clips(job: RenderJob, spans: Sequence[Span], zip_path: Path) -> ClipsResult:
    """Render one file per span and store each in the ZIP at `zip_path` as soon as it is done."""
    entries: list[str] = []
    frames, duration, encoder = 0, Fraction(0), ""
    with (
        tempfile.TemporaryDirectory(dir=zip_path.parent, prefix=".clips-") as scratch,
        zip_path.open("wb") as sink,
    ):
        archive = ZipStreamWriter(sink)
        for number, span in enumerate(spans, start=1):
            name = clip_name(number, span.segment, str(job.request.format))
            clip_path = Path(scratch) / name
            clip = encode_file(job, [span], clip_path)
            archive.add_file(name, clip_path)
            clip_path.unlink()
            entries.append(name)
            frames, duration, encoder = frames + clip.frames, duration + clip.duration, clip.encoder_used
        archive.close()
    return ClipsResult(tuple(entries), FileResult(frames, duration, encoder))
