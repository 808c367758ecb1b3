"""A render farm in a test: real Postgres rows, a real Redis queue, a store, and a burst-mode worker.

`Farm` inserts users, videos and export rows the way the API does (status 'pending', the request
under segments["request"]), enqueues with `enqueue_export`, and runs the worker that `build_worker`
makes until the queue is empty. Each farm has its own queue name, so no job leaks between tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from saq.queue.redis import RedisQueue
from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from gpu_worker.contract import TERMINAL_STATUSES, ProgressMessage, RenderRequest, enc_hook
from gpu_worker.settings import WorkerSettings
from gpu_worker.store import Store, StoreSettings, new_key, open_store
from gpu_worker.tasks.enqueue import enqueue_export
from gpu_worker.worker import build_worker
from tests.fixtures.app import worker_settings

WORKER_RUN_TIMEOUT_S = 60
RECONCILE_NEVER = "0 0 29 2 *"
"""The farm's workers keep the reconciler cron off (tests call `reconcile` themselves): at a minute
boundary it re-ran exports that a test had left 'processing' under a made-up worker."""


@dataclass
class Farm:
    settings: WorkerSettings
    db: AsyncEngine
    store: Store
    queue: RedisQueue
    redis: Redis

    async def add_user(self) -> uuid.UUID:
        user_id = uuid.uuid4()
        await self.sql(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at)"
            " VALUES (:id, :email, 'x', now(), now())",
            id=user_id,
            email=f"{user_id.hex}@example.com",
        )
        return user_id

    async def add_video(self, user_id: uuid.UUID, path: Path, name: str = "holiday clip.mp4") -> uuid.UUID:
        """Store the file under a server-made key and insert its `videos` row (status ready)."""
        video_id = uuid.uuid4()
        key = new_key("videos", user_id, "mp4")
        size = await self.store.put_file(key, path)
        await self.sql(
            "INSERT INTO videos (id, user_id, original_filename, storage_key, size_bytes, sha256,"
            " status, created_at, updated_at)"
            " VALUES (:id, :user_id, :name, :key, :size, :sha, 'ready', now(), now())",
            id=video_id,
            user_id=user_id,
            name=name,
            key=key,
            size=size,
            sha="0" * 64,
        )
        return video_id

    async def add_export(
        self,
        user_id: uuid.UUID,
        video_id: uuid.UUID,
        request: RenderRequest,
        *,
        status: str = "pending",
        attempt: int = 0,
        idle_s: float = 0.0,
        queue: str | None = None,
    ) -> uuid.UUID:
        """An export row as the API inserts it, routed to `queue` (default: this farm's own, so no
        other test's worker or reconciler, on the same database, can take it); `idle_s` backdates
        `updated_at`."""
        export_id = uuid.uuid4()
        segments = {"request": msgspec.to_builtins(request, enc_hook=enc_hook), "clips": []}
        await self.sql(
            "INSERT INTO exports (id, video_id, user_id, resolution, quality, format, codec, mode, segments,"
            " status, progress, encoder_requested, attempt, queue_name, created_at, updated_at)"
            " VALUES (:id, :video_id, :user_id, :resolution, :quality, :format, :codec, :mode,"
            " CAST(:segments AS jsonb), CAST(:status AS export_status), 0, :encoder, :attempt, :queue, now(),"
            " now() - make_interval(secs => :idle_s))",
            id=export_id,
            video_id=video_id,
            user_id=user_id,
            resolution=str(request.resolution),
            quality=str(request.quality),
            format=str(request.format),
            codec=str(request.video_codec),
            mode=str(request.mode),
            segments=json.dumps(segments),
            status=status,
            encoder=str(request.encoder),
            attempt=attempt,
            queue=queue or self.queue.name,
            idle_s=float(idle_s),
        )
        return export_id

    async def submit(self, path: Path, request: RenderRequest) -> tuple[uuid.UUID, uuid.UUID]:
        """A user, their video and a pending, enqueued export of it: (user_id, export_id)."""
        user_id = await self.add_user()
        video_id = await self.add_video(user_id, path)
        export_id = await self.add_export(user_id, video_id, request)
        assert await enqueue_export(self.queue, export_id) is not None
        return user_id, export_id

    async def row(self, export_id: uuid.UUID) -> RowMapping:
        async with self.db.connect() as conn:
            result = await conn.execute(text("SELECT * FROM exports WHERE id = :id"), {"id": export_id})
            return result.mappings().one()

    async def sql(self, statement: str, **params: Any) -> int:
        async with self.db.begin() as conn:
            return (await conn.execute(text(statement), params)).rowcount

    async def run_worker(self) -> None:
        """Run a burst worker until the queue is empty (each run ends with one 1 s empty dequeue)."""
        worker = build_worker(self.settings, burst=True, dequeue_timeout=1)
        await asyncio.wait_for(worker.start(), WORKER_RUN_TIMEOUT_S)

    def scratch_files(self) -> list[Path]:
        return [p for p in self.settings.scratch_dir.rglob("*") if p.is_file()]


MESSAGE_TIMEOUT_S = 10.0


async def next_message(pubsub: PubSub) -> ProgressMessage:
    """The next progress message on a subscribed channel (awaited, not polled)."""
    async with asyncio.timeout(MESSAGE_TIMEOUT_S):
        while True:
            raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=MESSAGE_TIMEOUT_S)
            if raw is not None:
                return msgspec.json.decode(raw["data"], type=ProgressMessage)


async def messages_until_terminal(pubsub: PubSub) -> list[ProgressMessage]:
    messages = [await next_message(pubsub)]
    while messages[-1].status not in TERMINAL_STATUSES:
        messages.append(await next_message(pubsub))
    return messages


@asynccontextmanager
async def open_farm(
    root: Path, database_url: str, redis_url: str, db: AsyncEngine, storage: StoreSettings
) -> AsyncIterator[Farm]:
    settings = replace(
        worker_settings(root, database_url, redis_url, storage, queue_name=f"test-{uuid.uuid4().hex[:12]}"),
        reconcile_cron=RECONCILE_NEVER,
    )
    queue = RedisQueue.from_url(redis_url, name=settings.queue_name)
    farm = Farm(settings, db, open_store(storage), queue, Redis.from_url(redis_url))
    # SAQ sweeps the active list when a worker starts; a job dequeued in that same millisecond is
    # still 'queued' and gets swept and retried. Holding the sweep lock keeps burst runs exact.
    await farm.redis.setex(queue.namespace("sweep"), 3600, 1)
    try:
        yield farm
    finally:
        await queue.disconnect()
        await farm.redis.aclose()
        await farm.store.aclose()
