"""Live progress in Redis: a snapshot hash per export plus pub/sub, shared by the worker and the API.

Every message goes through one Lua script, so numbering, snapshot and publish are one atomic step:
- `seq` is `HINCRBY progress_key(id) seq 1`: it grows across attempts and across writers (worker,
  reconciler, the API's cancel), so a client can drop anything not above the last seq it applied.
- The snapshot hash holds one field per `ProgressMessage` attribute, each JSON-encoded
  (`seq` is a bare integer, which is JSON too), and expires a day after the last message.
- Once the snapshot is terminal (completed, failed, cancelled), non-terminal messages are dropped,
  so a render update racing the API's cancel can never resurrect a cancelled export.
The same JSON goes to `export_channel(id)` and `user_channel(user_id)`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, cast

import msgspec
from redis.asyncio import Redis

from gpu_worker.contract import (
    ExportStatus,
    Phase,
    ProgressMessage,
    export_channel,
    progress_key,
    user_channel,
)
from gpu_worker.fallback import Fallback

SNAPSHOT_TTL_S = 24 * 3600
MIN_INTERVAL_S = 0.25
"""At most four rendering updates a second; phase changes and terminal states always go out."""

_PUBLISH = """
local msg = cjson.decode(ARGV[1])
local terminal = {completed = true, failed = true, cancelled = true}
local current = redis.call('HGET', KEYS[1], 'status')
if current and terminal[cjson.decode(current)] and not terminal[msg.status] then
  return false
end
msg.seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
for field, value in pairs(msg) do
  if field ~= 'seq' then
    redis.call('HSET', KEYS[1], field, cjson.encode(value))
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local payload = cjson.encode(msg)
redis.call('PUBLISH', KEYS[2], payload)
redis.call('PUBLISH', KEYS[3], payload)
return payload
"""

_decoder = msgspec.json.Decoder(ProgressMessage)


async def publish_progress(redis: Redis, message: ProgressMessage) -> ProgressMessage | None:
    """Number, store and publish `message` (its own `seq` is ignored); None when it was dropped
    because the export already reached a terminal state."""
    script = redis.register_script(_PUBLISH)  # no round trip: EVALSHA, loading the script once per server
    keys = [progress_key(message.export_id), export_channel(message.export_id), user_channel(message.user_id)]
    payload = await script(keys=keys, args=[msgspec.json.encode(message), SNAPSHOT_TTL_S])
    return None if payload is None else _decoder.decode(payload)


async def read_snapshot(redis: Redis, export_id: object) -> ProgressMessage | None:
    """The latest message of an export from its snapshot hash; None when there is none (expired,
    never published) or it cannot be read as a ProgressMessage."""
    pending = cast(Awaitable[dict[bytes | str, bytes | str]], redis.hgetall(progress_key(export_id)))
    fields = await pending
    if not fields:
        return None
    data: dict[str, Any] = {
        (k.decode() if isinstance(k, bytes) else k): msgspec.json.decode(v) for k, v in fields.items()
    }
    try:
        return msgspec.convert(data, ProgressMessage)
    except msgspec.ValidationError:
        return None


class ProgressPublisher:
    """One export attempt's messages: throttled updates while it runs, one terminal message at the end.

    Frame counts are remembered even from throttled updates and carried by every later message,
    so the phase change after rendering (and the terminal message) shows the final count.
    Calls are serialised by a lock, so messages leave in the order they were asked for even when
    the render thread posts several before the first has reached Redis. Every message carries the
    fallback the row holds: routing's (`fallback`, from the claim) until the render completes.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        export_id: object,
        user_id: object,
        attempt: int,
        fallback: Fallback | None = None,
        min_interval_s: float = MIN_INTERVAL_S,
    ) -> None:
        self._redis = redis
        self._export_id, self._user_id, self._attempt = str(export_id), str(user_id), attempt
        self._fallback = fallback
        self._min_interval_s = min_interval_s
        self._lock = asyncio.Lock()
        self._phase: Phase | None = None
        self._last = float("-inf")
        self._frames_done = 0
        self._frames_total = 0

    async def update(
        self,
        phase: Phase,
        *,
        percent: int,
        frames_done: int | None = None,
        frames_total: int | None = None,
        fps: float = 0.0,
        eta_s: float | None = None,
    ) -> ProgressMessage | None:
        """Publish a 'processing' message unless one of the same phase went out under
        `min_interval_s` ago (then None: the next update carries newer numbers anyway).
        Frame counts left out keep their last values."""
        async with self._lock:
            if frames_done is not None:
                self._frames_done = frames_done
            if frames_total is not None:
                self._frames_total = frames_total
            now = time.monotonic()
            if phase == self._phase and now - self._last < self._min_interval_s:
                return None
            self._phase, self._last = phase, now
            message = ProgressMessage(
                export_id=self._export_id,
                user_id=self._user_id,
                attempt=self._attempt,
                seq=0,
                status=ExportStatus.PROCESSING,
                phase=phase,
                percent=max(0, min(percent, 100)),
                frames_done=self._frames_done,
                frames_total=self._frames_total,
                fps=fps,
                eta_s=eta_s,
                **self._fallback_fields(self._fallback),
            )
            return await publish_progress(self._redis, message)

    async def finish(
        self,
        status: ExportStatus,
        *,
        percent: int = 0,
        error: str | None = None,
        encoder_used: str | None = None,
        fallback: Fallback | None = None,
    ) -> ProgressMessage | None:
        """The terminal message (or 'pending' when the attempt hands the export back); never throttled.
        `fallback` is the completed render's, which the row records; any other end keeps routing's,
        as the row does."""
        async with self._lock:
            self._phase, self._last = None, time.monotonic()
            message = ProgressMessage(
                export_id=self._export_id,
                user_id=self._user_id,
                attempt=self._attempt,
                seq=0,
                status=status,
                phase=Phase.QUEUED if status is ExportStatus.PENDING else None,
                percent=percent,
                frames_done=self._frames_done,
                frames_total=self._frames_total,
                error=error,
                encoder_used=encoder_used,
                **self._fallback_fields(fallback if status is ExportStatus.COMPLETED else self._fallback),
            )
            return await publish_progress(self._redis, message)

    @staticmethod
    def _fallback_fields(fallback: Fallback | None) -> dict[str, Any]:
        if fallback is None:
            return {}
        return {"fallback_code": fallback.code, "fallback_reason": fallback.detail}
