"""Minimal pages: the video list with an upload form (XHR with a progress bar), and one video."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from backend.db import models as m
from backend.domain.videos.controllers import upload_video
from backend.domain.videos.deps import provide_video_service
from backend.domain.videos.services import VideoService
from backend.lib.deps import SettingsDep, StoreDep

PAGE_SIZE = 50


class VideoPages(Controller):
    include_in_schema = False
    dependencies = {"videos": Provide(provide_video_service)}

    @get("/videos")
    async def list_page(
        self,
        videos: NamedDependency[VideoService],
        current_user: NamedDependency[m.User],
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
            },
        )

    @post("/videos/upload", request_max_body_size=None)
    async def upload(
        self,
        request: Request[Any, Any, Any],
        videos: NamedDependency[VideoService],
        current_user: NamedDependency[m.User],
        settings: SettingsDep,
        store: StoreDep,
    ) -> Template:
        """Answers the row fragment the page inserts into its table."""
        video = await upload_video(request, videos, current_user, settings, store)
        return Template("partials/video_row.html", context={"v": video}, status_code=201)

    @get("/videos/{video_id:uuid}")
    async def detail(
        self,
        videos: NamedDependency[VideoService],
        current_user: NamedDependency[m.User],
        video_id: FromPath[UUID],
    ) -> Template:
        video = await videos.get_owned(current_user.id, video_id)
        return Template("video.html", context={"user": current_user, "v": video})
