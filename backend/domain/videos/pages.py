"""Video pages: the list with an upload form (XHR with a progress bar), one video with its player and
segment editor, and the media the pages embed (thumbnail, source), each for its owner only.

Another user's id answers the HTML 404 page, exactly like a missing one.
"""

from __future__ import annotations

from contextlib import aclosing
from fractions import Fraction
from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from backend.db import models as m
from backend.domain.exports.controllers import stored_file
from backend.domain.exports.deps import provide_export_service
from backend.domain.exports.services import ExportService
from backend.domain.exports.views import encoder_note
from backend.domain.videos.controllers import upload_video
from backend.domain.videos.deps import provide_video_service
from backend.domain.videos.services import VideoService
from backend.lib.deps import CurrentUserDep, SettingsDep, StoreDep
from gpu_worker.store import LocalStore, ObjectNotFound

PAGE_SIZE = 50
EXPORTS_SHOWN = 20
THUMBNAIL_CACHE = "private, max-age=3600"
CONTAINER_NAMES = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV",
    "matroska,webm": "Matroska/WebM",
    "avi": "AVI",
    "mpegts": "MPEG-TS",
}
"""Friendly names for FFmpeg's demuxer families (the probe stores the family)."""


def container_name(container: str | None) -> str:
    return CONTAINER_NAMES.get(container or "", container or "unknown")


def frame_rate_text(rate: str | None) -> str:
    """A rational frame rate as a person reads it: 30000/1001 is "29.97 fps"."""
    if not rate:
        return "unknown"
    fps = Fraction(rate)
    return f"{float(fps):.3f}".rstrip("0").rstrip(".") + " fps"


def size_limit(size: int) -> str:
    """The upload limit as a person reads it: "4 GiB", "32 MiB"."""
    mib = size / (1024 * 1024)
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib:g} MiB"


class VideoPages(Controller):
    include_in_schema = False
    dependencies = {"videos": Provide(provide_video_service), "exports": Provide(provide_export_service)}

    @get("/videos")
    async def list_page(
        self,
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        settings: SettingsDep,
        page: FromQuery[int] = 1,
    ) -> Template:
        page = max(page, 1)
        rows, total = await videos.page(current_user.id, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        return Template(
            "videos.html",
            context={
                "user": current_user,
                "videos": rows,
                "total": total,
                "page": page,
                "pages": max(1, -(-total // PAGE_SIZE)),
                "upload_limit": size_limit(settings.max_upload_bytes),
            },
        )

    @post("/videos/upload", request_max_body_size=None)
    async def upload(
        self,
        request: Request[Any, Any, Any],
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        settings: SettingsDep,
        store: StoreDep,
    ) -> Template:
        """Answers the row fragment the page inserts into its table."""
        video = await upload_video(request, videos, current_user, settings, store)
        return Template("partials/video_row.html", context={"v": video}, status_code=201)

    @get("/videos/{video_id:uuid}")
    async def detail(
        self,
        state: State,
        videos: NamedDependency[VideoService],
        exports: NamedDependency[ExportService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
    ) -> Template:
        """The player, the segment editor and this video's exports (newest first), which the
        export dialog and cards render from `v`, `user` and `exports`; the dialog's Encoder note
        from `encoder_note`."""
        video = await videos.get_owned(current_user.id, video_id)
        recent, _ = await exports.page(current_user.id, video_id=video.id, limit=EXPORTS_SHOWN)
        return Template(
            "video.html",
            context={
                "user": current_user,
                "v": video,
                "exports": recent,
                "encoder_note": await encoder_note(state.redis, state.settings.core),
                "container_name": container_name(video.container),
                "frame_rate": frame_rate_text(video.frame_rate),
            },
        )

    @delete("/videos/{video_id:uuid}", status_code=200)
    async def delete_video(
        self,
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
        store: StoreDep,
    ) -> Template:
        """htmx swaps the row out with this answer: nothing in its place, and the new count out of band."""
        await videos.remove(current_user.id, video_id, store)
        total = await videos.count(m.Video.user_id == current_user.id)
        return Template("partials/video_deleted.html", context={"total": total})

    @get("/videos/{video_id:uuid}/thumbnail")
    async def thumbnail(
        self,
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
        store: StoreDep,
    ) -> Response[bytes]:
        video = await videos.get_owned(current_user.id, video_id)
        if video.thumbnail_key is None:
            raise NotFoundException("this video has no thumbnail")
        try:
            async with aclosing(store.get_stream(video.thumbnail_key)) as chunks:
                data = b"".join([chunk async for chunk in chunks])
        except ObjectNotFound as exc:
            raise NotFoundException("this video has no thumbnail") from exc
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": THUMBNAIL_CACHE})

    @get("/videos/{video_id:uuid}/source")
    async def source(
        self,
        request: Request[Any, Any, Any],
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
        store: StoreDep,
    ) -> Response[Any]:
        """The uploaded file for the player: ranged (seeking works) from the local store, or a
        redirect to a short-lived presigned URL on S3."""
        video = await videos.get_owned(current_user.id, video_id)
        if isinstance(store, LocalStore):
            return await stored_file(request, store, video.storage_key, video.original_filename)
        return Redirect(await store.download_url(video.storage_key, filename=video.original_filename))
