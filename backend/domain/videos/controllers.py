"""JSON endpoints for videos: streamed upload, paginated list, one, delete.

The upload reads its multipart body itself (streamed to disk, never held in memory), so it declares
no `data` parameter; `UploadOperation` documents the body Litestar cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from backend.db import models as m
from backend.domain.videos.deps import provide_video_service
from backend.domain.videos.schemas import Page, VideoOut
from backend.domain.videos.services import VideoService
from backend.domain.videos.upload import spool_upload
from backend.lib.auth import CurrentUser
from backend.lib.deps import CurrentUserDep, SettingsDep, StoreDep
from backend.lib.openapi import AUTHENTICATED, problems
from backend.lib.settings import Settings
from gpu_worker.store import Store


async def upload_video(
    request: Request[Any, Any, Any], videos: VideoService, user: CurrentUser, settings: Settings, store: Store
) -> m.Video:
    """Shared by the API and the upload page: spool, probe, store, record; the scratch file always goes."""
    spooled = await spool_upload(request, settings.core.scratch_dir / "uploads", settings.max_upload_bytes)
    try:
        return await videos.ingest(user.id, spooled, store)
    finally:
        spooled.path.unlink(missing_ok=True)


MAX_OFFSET = 2**63 - 1
"""Postgres counts OFFSET in a bigint: a larger one is the caller's mistake (422), not a database error."""


@dataclass
class UploadOperation(Operation):
    """The upload's operation with its request body: multipart/form-data with one binary `file`."""

    def __post_init__(self) -> None:
        file = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description="the video file")
        form = Schema(type=OpenAPIType.OBJECT, required=["file"], properties={"file": file})
        self.request_body = RequestBody(
            content={RequestEncodingType.MULTI_PART: OpenAPIMediaType(schema=form)}, required=True
        )


class VideoController(Controller):
    path = "/api/videos"
    tags = ["videos"]
    security = AUTHENTICATED
    dependencies = {"videos": Provide(provide_video_service)}

    @post(
        "/",
        operation_id="uploadVideo",
        status_code=HTTP_201_CREATED,
        request_max_body_size=None,
        operation_class=UploadOperation,
        description="multipart/form-data with one `file` field; streamed, probed, 422 if not a video.",
        responses=problems(
            401,
            403,
            503,
            described={
                400: "a malformed multipart body, no `file` field, an empty file or a NUL in its name",
                413: "the file is over MAX_UPLOAD_MB",
                415: "the body is not multipart/form-data",
                422: "not a video this service can read",
            },
        ),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        settings: SettingsDep,
        store: StoreDep,
    ) -> VideoOut:
        video = await upload_video(request, videos, current_user, settings, store)
        return videos.to_schema(video, schema_type=VideoOut)

    @get("/", operation_id="listVideos", responses=problems(400, 401, 422, 503))
    async def list_videos(
        self,
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Page:
        rows, total = await videos.page(current_user.id, limit, offset)
        items = [videos.to_schema(v, schema_type=VideoOut) for v in rows]
        return Page(items=items, total=total, limit=limit, offset=offset)

    @get("/{video_id:uuid}", operation_id="getVideo", responses=problems(400, 401, 404, 503))
    async def get_video(
        self,
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
    ) -> VideoOut:
        return videos.to_schema(await videos.get_owned(current_user.id, video_id), schema_type=VideoOut)

    @delete(
        "/{video_id:uuid}",
        operation_id="deleteVideo",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, 401, 403, 404, 503),
    )
    async def delete_video(
        self,
        videos: NamedDependency[VideoService],
        current_user: CurrentUserDep,
        video_id: FromPath[UUID],
        store: StoreDep,
    ) -> None:
        await videos.remove(current_user.id, video_id, store)
