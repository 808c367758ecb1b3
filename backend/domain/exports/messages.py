"""What every progress message of an export says: one source for the websockets and announcements.

The row (Postgres, the truth) says what the export is: its status once final, the encoder, the
fallback, why and until when it waits, the error, the attempt. The Redis snapshot says how far a
render got (phase, percent, frames, fps, ETA) and numbers the messages (`seq`). `export_message`
joins the two, so a socket's first message, its last one and the API's announcements carry the
same fields as GET /api/exports/{id}; live messages carry them because the worker publishes them
from its claim of the row (gpu_worker.progress.ProgressPublisher).
"""

from __future__ import annotations

import logging

import msgspec
from redis.asyncio import Redis

from backend.db import models as m
from gpu_worker.contract import TERMINAL_STATUSES, ExportStatus, Phase, ProgressMessage, user_channel
from gpu_worker.fallback import FallbackCode, WaitingCode
from gpu_worker.progress import publish_progress

log = logging.getLogger(__name__)


def export_message(
    export: m.Export, snapshot: ProgressMessage | None = None, *, seq: int | None = None
) -> ProgressMessage:
    """The row's fields, with the progress of `snapshot` (the export's Redis snapshot, if any).

    While the row is not final the snapshot's progress stands (it is ahead of the row's, which a
    worker writes less often); once it is, the row's status and percent do, and the snapshot adds
    the frame counts of the attempt's last message. `seq` defaults to the snapshot's, else 0."""
    live = snapshot if snapshot is not None and snapshot.export_id == str(export.id) else None
    same_attempt = live is not None and live.attempt == export.attempt
    frames = (live.frames_done, live.frames_total) if live is not None and same_attempt else (0, 0)
    if live is not None and export.status not in TERMINAL_STATUSES:
        status, phase, percent, fps, eta_s = live.status, live.phase, live.percent, live.fps, live.eta_s
    else:
        status, fps, eta_s = export.status, 0.0, None
        phase = Phase(export.phase) if export.phase and status not in TERMINAL_STATUSES else None
        percent = 100 if status == ExportStatus.COMPLETED else export.progress
    return ProgressMessage(
        export_id=str(export.id),
        user_id=str(export.user_id),
        seq=seq if seq is not None else (live.seq if live is not None else 0),
        frames_done=frames[0],
        frames_total=frames[1],
        encoder_used=export.encoder_used,
        fallback_code=FallbackCode(export.fallback_code) if export.fallback_code else None,
        fallback_reason=export.fallback_reason,
        waiting_code=WaitingCode(export.waiting_code) if export.waiting_code else None,
        wait_until=export.wait_until,
        error=export.error,
        attempt=export.attempt,
        status=status,
        phase=phase,
        percent=percent,
        fps=fps,
        eta_s=eta_s,
    )


async def announce_created(export: m.Export, redis: Redis) -> None:
    """Tell the user's open sockets (other tabs' pages show it live); best effort, a page reload
    finds it in Postgres. The row's own state as seq 0, on the user channel only and without a
    snapshot, so the worker's numbering is untouched; sent before the job is queued, so it never
    arrives after the worker's first message."""
    try:
        await redis.publish(user_channel(export.user_id), msgspec.json.encode(export_message(export)))
    except Exception:
        log.exception("could not announce the new export %s", export.id)


async def announce_cancel(export: m.Export, redis: Redis) -> None:
    """Tell open sockets; best effort, since a socket also finds the final state in Postgres."""
    try:
        await publish_progress(redis, export_message(export))  # numbered by the script
    except Exception:
        log.exception("could not publish the cancellation of export %s", export.id)
