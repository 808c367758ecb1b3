"""The `export_video` task: claim the export, fetch the source, render in a thread, store, finish.

The engine is synchronous and runs through `asyncio.to_thread`; cancelling the task does not stop
a thread, so every way of stopping an attempt ends in the engine's `threading.Event`:
- a guard polls the row every WATCH_INTERVAL_S and stops the attempt once the row is no longer
  'processing' for this attempt (the API cancelled it, or the reconciler gave it to another claim);
  the task then returns quietly and writes nothing more to the row;
- SAQ's abort (the API's `queue.abort`), its timeout or a worker shutdown cancel the task: the
  attempt hands the row back to 'pending' (a no-op when it was cancelled) and re-raises, so SAQ
  records the abort or retries the job, and the retry can claim the row again.
In every case the engine stops at its next frame check, an unfinished upload is aborted and the
scratch directory `<scratch_dir>/<export_id>-<attempt>` is removed.

Live progress is best-effort: Redis is not the source of truth (the row is, and a websocket falls
back to it), so a failed publish is logged (at most every PUBLISH_WARN_INTERVAL_S), later updates are
skipped for PUBLISH_PAUSE_S, and the render goes on; the terminal message is tried
TERMINAL_PUBLISH_ATTEMPTS times with backoff and then given up.

Failures: bad input (MediaError, ContractError, an unreadable request, a missing source) fails the
export with its message and no retry. Storage, Redis and database outages are transient: while the
SAQ job has retries left the row goes back to 'pending' and the error is re-raised for SAQ to retry
with backoff; after that the export fails. Anything else fails it with INTERNAL_ERROR and is
logged with its traceback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from saq import Job
from sqlalchemy.exc import InterfaceError, OperationalError

from gpu_worker.contract import (
    ContractError,
    EncoderChoice,
    ExportStatus,
    Mode,
    Phase,
    ProgressReport,
    RenderRequest,
    decode_request,
    format_seconds,
)
from gpu_worker.engine import MediaError, RenderCancelled
from gpu_worker.engine.clips import clip_name
from gpu_worker.engine.run import RenderOutcome, run_render
from gpu_worker.engine.zipstream import ZipStreamWriter
from gpu_worker.fallback import Fallback, FallbackCode
from gpu_worker.logs import bind_attempt
from gpu_worker.metrics import METRICS
from gpu_worker.progress import ProgressPublisher
from gpu_worker.rows import Claim, ClipRecord, RowState, SourceVideo
from gpu_worker.store import LocalStore, ObjectNotFound, ObjectWriter, StoreError, sanitize_filename
from gpu_worker.tasks.context import WorkerServices, services_of

log = logging.getLogger(__name__)
T = TypeVar("T")

INTERNAL_ERROR = "internal error while rendering (see worker log)"
WATCH_INTERVAL_S = 0.5
"""How often the guard reads the row: a cancel stops the render within about this plus one frame."""
HEARTBEAT_INTERVAL_S = 15.0
"""SAQ job heartbeat and row `updated_at` refresh; the job's heartbeat limit is 60 s."""
ROW_INTERVAL_S = 2.0
"""The row's progress/phase are written at most this often (Redis gets every message)."""
PUBLISH_ERRORS = (RedisError, OSError)
PUBLISH_WARN_INTERVAL_S = 30.0
PUBLISH_PAUSE_S = 5.0
"""After a failed publish, updates are skipped this long, so a Redis outage cannot slow the render."""
TERMINAL_PUBLISH_ATTEMPTS = 3
TERMINAL_PUBLISH_BACKOFF_S = 0.5
"""Doubled after each failed try of the terminal message: 0.5 s, then 1 s."""
CPU_ONLY_REASON = "this worker renders on the CPU only (--encoder cpu)"
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "zip": "application/zip"}


class ExportFailed(Exception):
    """A failure whose message is meant for the user; the export fails without a retry."""


PERMANENT_ERRORS = (ExportFailed, MediaError, ContractError)
TRANSIENT_ERRORS = (StoreError, RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError)


@dataclass(frozen=True, slots=True)
class Output:
    """A stored rendition, ready to be recorded on the row."""

    key: str
    size_bytes: int
    duration: Fraction
    encoder_used: str
    fallback: Fallback | None
    clips: list[ClipRecord] | None = None


async def export_video(ctx: dict[str, Any], *, export_id: str) -> str:
    """SAQ task: render one export. Returns what happened: completed, failed, stopped or skipped."""
    services = services_of(ctx)
    job: Job = ctx["job"]
    queue = job.queue.name if job.queue is not None else None
    claim = await services.rows.claim(UUID(export_id), services.worker_id, queue)
    if claim is None:
        log.info("export %s is not pending (cancelled, finished or running elsewhere); skipped", export_id)
        return "skipped"
    bind_attempt(claim.attempt)
    log.info("export %s: attempt %d claimed by %s", export_id, claim.attempt, services.worker_id)
    attempt = ExportAttempt(services, ctx["job"], claim)
    return await services.jobs.run(export_id, claim.attempt, attempt.run())


def output_stem(original_filename: str) -> str:
    """A storage-key-safe file stem from the upload's name: 'Été 2024 (final).mov' -> 'Ete_2024_final'."""
    stem = Path(sanitize_filename(original_filename)).stem
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_-]+", "_", folded).strip("_-")[:100] or "export"


class _LoopSink:
    """The ZIP writer's synchronous sink, called in a worker thread: each write is handed to the
    async object writer on the event loop and waited for, so memory holds one block at a time."""

    def __init__(
        self, writer: ObjectWriter, loop: asyncio.AbstractEventLoop, cancel: threading.Event
    ) -> None:
        self._writer = writer
        self._loop = loop
        self._cancel = cancel

    def write(self, data: bytes) -> None:
        if self._cancel.is_set():
            raise RenderCancelled
        asyncio.run_coroutine_threadsafe(self._writer.write(data), self._loop).result()


class ExportAttempt:
    """One claimed attempt of one export, from download to the terminal write."""

    def __init__(self, services: WorkerServices, job: Job, claim: Claim) -> None:
        self._services = services
        self._rows = services.rows
        self._store = services.store
        self._job = job
        self._claim = claim
        self._id = claim.export_id
        self._attempt = claim.attempt
        self._scratch = services.settings.scratch_dir / f"{claim.export_id}-{claim.attempt}"
        self._loop = asyncio.get_running_loop()
        self._cancel = threading.Event()
        self._lost = False
        self._publisher = ProgressPublisher(
            services.redis,
            export_id=claim.export_id,
            user_id=claim.user_id,
            attempt=claim.attempt,
            fallback=claim.routed,
        )
        self._phase = Phase.DOWNLOADING
        self._percent = 0
        self._row_written = float("-inf")
        self._posted: set[concurrent.futures.Future[None]] = set()
        self._publish_paused_until = float("-inf")
        self._publish_warned = float("-inf")
        self._metrics = METRICS.attempt()

    async def run(self) -> str:
        try:
            return await self._run()
        finally:
            self._metrics.close()
            # Inline, not in a thread: it must happen even when the task is being cancelled.
            shutil.rmtree(self._scratch, ignore_errors=True)

    async def _run(self) -> str:
        try:
            await self._set_phase(Phase.DOWNLOADING)
            output = await self._guarded(self._produce())
        except asyncio.CancelledError:
            await self._hand_back()
            raise
        except PERMANENT_ERRORS as exc:
            log.info("export %s attempt %d failed: %s", self._id, self._attempt, exc)
            return await self._fail(str(exc))
        except msgspec.ValidationError as exc:
            return await self._fail(f"invalid export request: {exc}")
        except TRANSIENT_ERRORS:
            if self._job.retryable:
                log.warning("export %s attempt %d: transient error, SAQ retries", self._id, self._attempt)
                await self._hand_back()
                raise
            log.exception("export %s attempt %d failed, no retries left", self._id, self._attempt)
            return await self._fail("storage or service unavailable (see worker log)")
        except Exception:
            log.exception("export %s attempt %d failed", self._id, self._attempt)
            return await self._fail(INTERNAL_ERROR)
        if output is None:
            log.info("export %s attempt %d stopped: cancelled or taken over", self._id, self._attempt)
            return "stopped"
        return await self._complete(output)

    # -- the work --------------------------------------------------------------------------------

    async def _produce(self) -> Output:
        if self._claim.request is None:
            raise ExportFailed("the export has no render request")
        request = decode_request(self._claim.request)
        video = await self._rows.load_video(self._claim.video_id)
        if video is None:
            raise ExportFailed("the source video no longer exists")
        source = await self._fetch(video)
        self._scratch.mkdir(parents=True, exist_ok=True)
        extension = "zip" if request.mode is Mode.CLIPS else str(request.format)
        key = f"exports/{self._claim.user_id}/{self._id}/{output_stem(video.original_filename)}.{extension}"
        if request.mode is Mode.CLIPS:
            return await self._render_clips(request, source, key)
        return await self._render_single(request, source, key)

    async def _fetch(self, video: SourceVideo) -> Path:
        """The local store's file itself, else a copy of the S3 object in scratch."""
        if isinstance(self._store, LocalStore):
            path = self._store.local_path(video.storage_key)
            if not path.is_file():
                raise ExportFailed("the source video is missing from storage")
            return path
        target = self._scratch / f"source{Path(video.storage_key).suffix}"
        try:
            await self._store.download_to(video.storage_key, target)
        except ObjectNotFound as exc:
            raise ExportFailed("the source video is missing from storage") from exc
        return target

    def _choice(self) -> EncoderChoice:
        if self._services.settings.encoder == EncoderChoice.CPU:
            return EncoderChoice.CPU
        return EncoderChoice(self._claim.encoder_requested)

    def _fallback(self, outcome: RenderOutcome) -> Fallback | None:
        """A CPU-only worker explains itself when the job asked for more than the CPU. A CPU render
        of an export that routing sent to the CPU queue records routing's reason instead (no GPU
        worker was there to take it), which says more than this worker's own."""
        forced = self._choice() != EncoderChoice(self._claim.encoder_requested)
        cpu_only = Fallback(FallbackCode.CPU_ONLY_WORKER, CPU_ONLY_REASON)
        fallback = cpu_only if forced and outcome.fallback is None else outcome.fallback
        return self._claim.routed if fallback and self._claim.routed else fallback

    async def _render(
        self,
        request: RenderRequest,
        source: Path,
        output: Path,
        choice: EncoderChoice,
        progress: RenderProgress,
    ) -> RenderOutcome:
        settings = self._services.settings
        render = partial(
            run_render,
            request,
            source,
            output,
            choice=choice,
            gpu_index=settings.gpu_index,
            report=self._services.gpu_report,
            progress=progress,
            cancel=self._cancel,
            build_backend=self._services.build_backend,
            breaker=self._services.breaker,
            sessions=self._services.sessions,
        )
        started = time.monotonic()
        outcome = await self._in_thread(render)
        self._metrics.rendered(outcome.result.frames, time.monotonic() - started)
        return outcome

    async def _render_single(self, request: RenderRequest, source: Path, key: str) -> Output:
        await self._set_phase(Phase.RENDERING)
        output = self._scratch / f"output.{request.format}"
        outcome = await self._render(request, source, output, self._choice(), RenderProgress(self))
        await self._set_phase(Phase.UPLOADING, percent=99)
        size = await self._store.put_file(key, output, content_type=CONTENT_TYPES[str(request.format)])
        return Output(key, size, outcome.result.duration, outcome.encoder_used, self._fallback(outcome))

    async def _render_clips(self, request: RenderRequest, source: Path, key: str) -> Output:
        """One clip at a time: render it to scratch, stream it into the ZIP object, delete it.

        The ZIP itself never touches local disk (on S3 it goes out as multipart parts). After a GPU
        failure mid-clip the remaining clips go straight to the CPU, keeping the reason.
        """
        request.validate()
        total = sum((segment.duration for segment in request.segments), Fraction(0))
        choice, fallback = self._choice(), None
        clips: list[ClipRecord] = []
        done, frames, duration, encoder_used = Fraction(0), 0, Fraction(0), ""
        async with self._store.open_writer(key, CONTENT_TYPES["zip"]) as writer:
            archive = ZipStreamWriter(_LoopSink(writer, self._loop, self._cancel))
            for number, segment in enumerate(request.segments, start=1):
                await self._set_phase(Phase.RENDERING)
                name = clip_name(number, segment, str(request.format))
                path = self._scratch / name
                single = msgspec.structs.replace(request, segments=[segment], mode=Mode.SINGLE)
                progress = RenderProgress(self, done / total, segment.duration / total, frames)
                outcome = await self._render(single, source, path, choice, progress)
                if outcome.fallback and choice is not EncoderChoice.CPU:
                    choice = EncoderChoice.CPU
                fallback = fallback or self._fallback(outcome)
                await self._set_phase(Phase.PACKAGING)
                await self._in_thread(partial(archive.add_file, name, path))
                path.unlink()
                start, end = format_seconds(segment.start), format_seconds(segment.end)
                clips.append(ClipRecord(name, start, end, outcome.result.frames))
                done += segment.duration
                frames += outcome.result.frames
                duration += outcome.result.duration
                encoder_used = outcome.encoder_used
            await self._in_thread(archive.close)
        return Output(key, writer.written, duration, encoder_used, fallback, clips)

    # -- threads, cancellation, heartbeat -----------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread; if the task is cancelled meanwhile, set the cancel event and wait
        for the thread to notice, so nothing keeps writing scratch files or upload parts after us."""
        future = asyncio.ensure_future(asyncio.to_thread(fn))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self._cancel.set()
            await asyncio.wait([future])
            future.exception()  # retrieved: RenderCancelled is the expected end of that thread
            raise

    async def _guarded(self, work: Coroutine[Any, Any, Output]) -> Output | None:
        """Run `work` beside the guard; None when the guard stopped it because the row is not ours."""
        task = asyncio.create_task(work)
        guard = asyncio.create_task(self._guard(task))
        try:
            return await task
        except (asyncio.CancelledError, RenderCancelled):
            current = asyncio.current_task()
            if self._lost and (current is None or current.cancelling() == 0):
                return None
            raise
        finally:
            guard.cancel()
            (ended,) = await asyncio.gather(guard, return_exceptions=True)
            if isinstance(ended, Exception):
                log.error("export %s: the guard failed; cancels went unseen", self._id, exc_info=ended)

    async def _guard(self, work: asyncio.Task[Output]) -> None:
        expected = RowState(ExportStatus.PROCESSING, self._attempt)
        next_beat = time.monotonic() + HEARTBEAT_INTERVAL_S
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                if await self._rows.status_of(self._id) != expected:
                    self._lost = True
                    self._cancel.set()
                    work.cancel()
                    return
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT_INTERVAL_S
                    await self._job.update(progress=self._percent / 100)
                    await self._write_row()
            except TRANSIENT_ERRORS:
                log.warning("export %s: guard could not reach the database or Redis", self._id, exc_info=True)

    # -- progress ---------------------------------------------------------------------------------

    def post(self, percent: int, report: ProgressReport, frames_before: int) -> None:
        """Called by the engine thread: hand the update to the loop and return at once."""
        coro = self._on_progress(percent, report, frames_before)
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        self._posted.add(future)
        future.add_done_callback(self._posted.discard)

    async def _on_progress(self, percent: int, report: ProgressReport, frames_before: int) -> None:
        self._percent = percent
        self._metrics.progress(report.fps)
        self._services.jobs.progress(str(self._id), percent, report.fps)
        await self._publish(
            lambda: self._publisher.update(
                Phase.RENDERING,
                percent=percent,
                frames_done=frames_before + report.frames_done,
                frames_total=frames_before + report.frames_total,
                fps=report.fps,
                eta_s=report.eta_s,
            )
        )
        try:
            if time.monotonic() - self._row_written >= ROW_INTERVAL_S:
                await self._write_row()
        except TRANSIENT_ERRORS:
            log.warning("export %s: progress not written to the row", self._id, exc_info=True)

    async def _set_phase(self, phase: Phase, percent: int | None = None) -> None:
        await self._drain()
        self._phase = phase
        if percent is not None:
            self._percent = percent
        await self._publish(lambda: self._publisher.update(phase, percent=self._percent))
        await self._write_row()

    async def _publish(self, send: Callable[[], Awaitable[object]]) -> bool:
        """Send one live update unless a recent failure paused them; False when it did not go out.
        A failure never reaches the render: the row carries the state, Redis only mirrors it."""
        if time.monotonic() < self._publish_paused_until:
            return False
        try:
            await send()
        except PUBLISH_ERRORS:
            self._publish_paused_until = time.monotonic() + PUBLISH_PAUSE_S
            self._warn_unpublished()
            return False
        return True

    def _warn_unpublished(self) -> None:
        now = time.monotonic()
        if now - self._publish_warned >= PUBLISH_WARN_INTERVAL_S:
            self._publish_warned = now
            log.warning(
                "export %s: live progress not published (Redis); the render goes on", self._id, exc_info=True
            )

    async def _publish_terminal(self, send: Callable[[], Awaitable[object]], what: str) -> bool:
        """The terminal message, tried a few times with backoff (not paused by earlier failures);
        False when given up, and progress streams then read the final state from the row."""
        delay = TERMINAL_PUBLISH_BACKOFF_S
        for attempt in range(1, TERMINAL_PUBLISH_ATTEMPTS + 1):
            try:
                await send()
                return True
            except PUBLISH_ERRORS:
                if attempt == TERMINAL_PUBLISH_ATTEMPTS:
                    log.warning(
                        "export %s: %s message not published after %d tries; the row has it",
                        self._id,
                        what,
                        attempt,
                        exc_info=True,
                    )
                    return False
            await asyncio.sleep(delay)
            delay *= 2
        return False

    async def _write_row(self) -> None:
        self._row_written = time.monotonic()
        await self._rows.update_progress(self._id, self._attempt, phase=self._phase, progress=self._percent)

    async def _drain(self) -> None:
        """Wait for the engine's posted updates, so no stale one lands after a phase change."""
        if self._posted:
            await asyncio.gather(
                *(asyncio.wrap_future(f) for f in list(self._posted)), return_exceptions=True
            )

    # -- endings ----------------------------------------------------------------------------------

    async def _complete(self, output: Output) -> str:
        await self._drain()
        applied = await self._rows.complete(
            self._id,
            self._attempt,
            output_key=output.key,
            size_bytes=output.size_bytes,
            duration=float(output.duration),
            encoder_used=output.encoder_used,
            fallback=output.fallback,
            clips=output.clips,
        )
        if not applied:
            state = await self._rows.status_of(self._id)
            if state is None or state.status is not ExportStatus.COMPLETED:
                # Cancelled while the last bytes went up: the object must not outlive the export.
                await self._store.delete(output.key)
            log.info("export %s attempt %d finished but the row is no longer ours", self._id, self._attempt)
            return "stopped"
        await self._publish_terminal(
            lambda: self._publisher.finish(
                ExportStatus.COMPLETED,
                percent=100,
                encoder_used=output.encoder_used,
                fallback=output.fallback,
            ),
            "completed",
        )
        mode = Mode.SINGLE if output.clips is None else Mode.CLIPS
        fallback_reason = output.fallback.detail if output.fallback else None
        self._metrics.completed(output.encoder_used, fallback_reason, mode)
        log.info("export %s attempt %d completed: %s", self._id, self._attempt, output.key)
        return "completed"

    async def _fail(self, error: str) -> str:
        await self._drain()
        if not await self._rows.fail(self._id, self._attempt, error):
            return "stopped"
        await self._publish_terminal(
            lambda: self._publisher.finish(ExportStatus.FAILED, percent=self._percent, error=error), "failed"
        )
        return "failed"

    async def _hand_back(self) -> None:
        """Give the row back to 'pending' so a retry can claim it; no-op when it was cancelled."""
        try:
            await self._drain()
            handed_back = await self._rows.reset_to_pending(self._id, self._attempt)
        except TRANSIENT_ERRORS:
            log.warning(
                "export %s: could not hand the row back; the reconciler will", self._id, exc_info=True
            )
            return
        if not handed_back:
            return
        try:
            await self._publisher.finish(ExportStatus.PENDING)
        except PUBLISH_ERRORS:
            log.warning(
                "export %s: row handed back to 'pending', but announcing it failed (Redis);"
                " progress streams read it from the row",
                self._id,
                exc_info=True,
            )


class RenderProgress:
    """The engine's progress callback for one render: maps its frames onto the export's percent.

    In clips mode each clip covers `weight` of the export starting at `offset` (by duration), and
    the frame counts shown are those of the clips rendered so far plus the current one.
    """

    def __init__(
        self,
        attempt: ExportAttempt,
        offset: Fraction = Fraction(0),
        weight: Fraction = Fraction(1),
        frames_before: int = 0,
    ) -> None:
        self._attempt = attempt
        self._offset = offset
        self._weight = weight
        self._frames_before = frames_before

    def __call__(self, report: ProgressReport) -> None:
        fraction = self._offset + self._weight * Fraction(report.frames_done, max(report.frames_total, 1))
        self._attempt.post(min(int(fraction * 100), 99), report, self._frames_before)
