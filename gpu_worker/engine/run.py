"""run_render(): pick the backend, render, and re-render on the CPU when the GPU fails mid-way.

The one entry point for the CLI and the export job, so both record the same encoder fields
(encoder_requested, encoder_used, the typed fallback) for the same situation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from gpu_worker.breaker import CircuitBreaker, NvencSessions
from gpu_worker.contract import EncoderChoice, RenderRequest
from gpu_worker.encoders.base import Backend
from gpu_worker.encoders.nvenc import GpuBackendError
from gpu_worker.encoders.probe import GpuReport, probe_gpus
from gpu_worker.encoders.select import Selection, after_gpu_failure, instead_on_cpu, select_backend
from gpu_worker.engine.pipeline import RenderResult, render
from gpu_worker.engine.progress import ProgressCallback
from gpu_worker.fallback import Fallback

log = logging.getLogger(__name__)

BackendFactory = Callable[[Selection], Backend]


@dataclass(frozen=True, slots=True)
class RenderOutcome:
    """The rendered output plus what the export records about the encoder."""

    result: RenderResult
    encoder_requested: str
    encoder_used: str
    fallback: Fallback | None


def run_render(
    request: RenderRequest,
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    choice: EncoderChoice | str,
    strict: bool = False,
    gpu_index: int | None = None,
    report: GpuReport | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    build_backend: BackendFactory = Selection.backend,
    breaker: CircuitBreaker | None = None,
    sessions: NvencSessions | None = None,
) -> RenderOutcome:
    """Render on the backend `choice` selects; a `GpuBackendError` re-renders from the start on the CPU.

    `report` defaults to this process's GPU probe, which a CPU choice never needs (probing opens
    NVENC sessions, which takes seconds on a GPU machine). `build_backend` turns a selection into
    a backend (tests inject a failing GPU here). A worker passes its GPU's `breaker` (an open
    circuit sends the render to the CPU; GPU failures are counted) and its NVENC `sessions` (a GPU
    render waits for a free one). Raises `GpuUnavailableError` when a strict GPU
    job cannot run on the GPU, and whatever `render` raises (ContractError, MediaError,
    RenderCancelled), with no output left behind.
    """
    choice = EncoderChoice(choice)
    if report is None:
        report = GpuReport(driver_present=False) if choice is EncoderChoice.CPU else probe_gpus()
    selection = select_backend(choice, request.video_codec, report, strict=strict, gpu_index=gpu_index)

    def attempt(selection: Selection) -> tuple[Selection, RenderResult]:
        """Render; a GPU render holds an NVENC session, and asks the breaker inside it (its
        re-probe after a cool-down opens sessions too), going to the CPU when the circuit is open."""
        if selection.device != "gpu":
            return selection, render_on(selection)
        with sessions.hold(cancel) if sessions is not None else contextlib.nullcontext():
            blocked = breaker.admit() if breaker is not None else None
            if blocked is None:
                return selection, render_on(selection)
        on_cpu = instead_on_cpu(selection, blocked)
        return on_cpu, render_on(on_cpu)

    def render_on(selection: Selection) -> RenderResult:
        backend = build_backend(selection)
        return render(request, source_path, output_path, backend=backend, progress=progress, cancel=cancel)

    try:
        selection, result = attempt(selection)
    except GpuBackendError as exc:
        if selection.device != "gpu":
            raise
        if breaker is not None:
            breaker.record_failure(exc.reason)
        log.warning("%s failed mid-render (%s); re-rendering on the CPU", selection.encoder_used, exc)
        selection, result = attempt(after_gpu_failure(selection, exc))
    return RenderOutcome(
        result=result,
        encoder_requested=str(selection.encoder_requested),
        encoder_used=selection.encoder_used,
        fallback=selection.fallback,
    )
