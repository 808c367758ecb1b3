"""Videos: accept a spooled upload once the probe says it is a decodable video; list, get, delete.

Every read takes the owner's id, so another user's video is simply "not found".
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from litestar.exceptions import HTTPException
from sqlalchemy import select

from backend.db import models as m
from backend.domain.videos.upload import SpooledFile, store_thumbnail
from gpu_worker.engine.source import MediaError, MediaInfo, probe
from gpu_worker.store import Store, new_key, sanitize_filename

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 60.0
_SUFFIX_BY_CONTAINER = {
    "mov": "mp4",
    "mp4": "mp4",
    "matroska": "mkv",
    "webm": "webm",
    "avi": "avi",
    "mpegts": "ts",
}


class UnprocessableMedia(HTTPException):
    status_code = 422


class VideoService(SQLAlchemyAsyncRepositoryService[m.Video]):
    class Repo(SQLAlchemyAsyncRepository[m.Video]):
        model_type = m.Video

    repository_type = Repo

    async def ingest(self, owner: UUID, upload: SpooledFile, store: Store) -> m.Video:
        """Probe the spooled file, then store it and record it; on any failure nothing is kept."""
        try:
            info = await asyncio.wait_for(asyncio.to_thread(probe, upload.path), PROBE_TIMEOUT_S)
        except MediaError as exc:
            raise UnprocessableMedia(f"not a usable video: {exc}") from exc
        except TimeoutError as exc:
            raise UnprocessableMedia("not a usable video: probing took too long") from exc
        key = new_key("videos", owner, _suffix(info.container))
        await store.put_file(key, upload.path, content_type=upload.content_type)
        row = _video_row(owner, key, upload, info)
        try:
            row.thumbnail_key = await store_thumbnail(owner, upload.path, info, store)
            return await self.create(row, auto_commit=True)
        except BaseException:
            for stored in (key, row.thumbnail_key):
                if stored is not None:
                    await store.delete(stored)
            raise

    async def get_owned(self, owner: UUID, video_id: UUID) -> m.Video:
        video = await self.get_one_or_none(id=video_id, user_id=owner)
        if video is None:
            raise NotFoundError("video not found")
        return video

    async def page(self, owner: UUID, limit: int, offset: int) -> tuple[list[m.Video], int]:
        rows, total = await self.get_many_and_count(
            LimitOffset(limit=limit, offset=offset), m.Video.user_id == owner, order_by=[("created_at", True)]
        )
        return list(rows), total

    async def remove(self, owner: UUID, video_id: UUID, store: Store) -> None:
        """Delete the video, its exports (rows cascade) and every stored object of both (source,
        thumbnail, outputs)."""
        video = await self.get_owned(owner, video_id)
        session = self.repository.session
        keys = (
            await session.scalars(
                select(m.Export.output_key).where(
                    m.Export.video_id == video.id, m.Export.output_key.is_not(None)
                )
            )
        ).all()
        await self.delete(video.id, auto_commit=True)
        for key in [video.storage_key, video.thumbnail_key, *keys]:
            if key is None:
                continue
            try:
                await store.delete(key)
            except Exception:
                log.exception("could not delete stored object %s of video %s", key, video.id)


def _suffix(container: str) -> str:
    """FFmpeg names demuxers by family ("mov,mp4,m4a,3gp,3g2,mj2"); the first known member wins."""
    for name in container.split(","):
        if name in _SUFFIX_BY_CONTAINER:
            return _SUFFIX_BY_CONTAINER[name]
    return "bin"


def _video_row(owner: UUID, key: str, upload: SpooledFile, info: MediaInfo) -> m.Video:
    return m.Video(
        user_id=owner,
        # Display name only: no path, and no control or bidi characters to disguise it on the pages.
        original_filename=sanitize_filename(upload.filename, default="video"),
        storage_key=key,
        content_type=upload.content_type,
        size_bytes=upload.size,
        sha256=upload.sha256,
        status=m.VideoStatus.READY,
        container=info.container,
        duration=float(info.duration),
        frame_rate=str(info.frame_rate),
        frame_count=info.frame_count,
        width=info.width,
        height=info.height,
        rotation=info.rotation,
        video_codec=info.video_codec,
        pix_fmt=info.pix_fmt,
        bit_depth=info.bit_depth,
        audio_codec=info.audio_codec,
        audio_channels=info.audio_channels,
        audio_layout=info.audio_layout,
        audio_rate=info.audio_rate,
    )
