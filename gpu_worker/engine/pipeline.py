"""render(): demux -> decode -> cut -> scale -> encode -> mux, streaming, frame-exact, cancellable.

The pipeline owns the cut (frames whose presentation time t is in [start, end) of a segment), the
output timestamps, audio and muxing; the backend decodes and encodes. Output goes to a hidden
partial file that is renamed on success and removed on any failure.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from gpu_worker.contract import Mode, RenderRequest
from gpu_worker.encoders.base import Backend
from gpu_worker.engine.clips import render_clips
from gpu_worker.engine.encode import RenderJob, encode_file, partial_file
from gpu_worker.engine.progress import ProgressCallback, ProgressMeter
from gpu_worker.engine.source import open_source, probe
from gpu_worker.engine.timeline import plan_spans


@dataclass(frozen=True, slots=True)
class RenderResult:
    """What was written; `entries` lists the ZIP's file names in clips mode."""

    path: Path
    frames: int
    duration: Fraction
    size_bytes: int
    encoder_used: str
    width: int
    height: int
    codec: str
    entries: tuple[str, ...] = field(default=())


def render(
    request: RenderRequest,
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    backend: Backend,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RenderResult:
    """Render `request` from a local source to `output_path` (a media file, or a ZIP in clips mode).

    Raises ContractError for a request that does not fit the source, MediaError for bad input,
    RenderCancelled when `cancel` is set; in every failure case no output or temp file remains.
    """
    source, output = Path(source_path), Path(output_path)
    info = probe(source)
    request.validate(info.duration)
    cancel = cancel or threading.Event()
    with open_source(source) as container:
        spans = plan_spans(container, request.spans(info.duration), cancel)
    meter = ProgressMeter(progress, sum(span.frames for span in spans))
    job = RenderJob(request, source, info, backend, meter, cancel)
    width, height = job.size
    if request.mode is Mode.CLIPS:
        with partial_file(output) as partial:
            clip = render_clips(job, spans, partial)
        entries = clip.entries
        result = clip.result
    else:
        with partial_file(output) as partial:
            result = encode_file(job, spans, partial)
        entries = ()
    meter.finish()
    return RenderResult(
        path=output,
        frames=result.frames,
        duration=result.duration,
        size_bytes=output.stat().st_size,
        encoder_used=result.encoder_used,
        width=width,
        height=height,
        codec=str(request.video_codec),
        entries=entries,
    )
