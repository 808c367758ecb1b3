"""Streamed multipart upload: the request body goes to a scratch file chunk by chunk, hashed on the way.

Nothing is buffered whole in memory and nothing reaches storage until the probe has accepted the
file, so a rejected upload leaves no object behind. Once accepted, the list thumbnail is grabbed
from the same scratch file (`store_thumbnail`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from litestar import Request
from litestar.exceptions import ClientException, HTTPException
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.domain.videos.thumbnail import grab_thumbnail
from gpu_worker.engine.source import MediaInfo
from gpu_worker.store import Store, new_key

log = logging.getLogger(__name__)
THUMBNAIL_TIMEOUT_S = 30.0
FILE_FIELD = "file"
ACCEPTED_TYPES = ("video/", "application/octet-stream", "application/mp4")
_FLUSH_AT = 1024 * 1024
_FORM_OVERHEAD = 64 * 1024


class PayloadTooLarge(HTTPException):
    status_code = 413


class UnsupportedMediaType(HTTPException):
    status_code = 415


class MalformedMultipart(ClientException):
    """A body the multipart parser refuses (oversized part header, bad header byte, boundary too long
    or missing): the client's mistake, so a 400 naming the parser's complaint."""


@contextmanager
def _parsing() -> Iterator[None]:
    try:
        yield
    except FormParserError as exc:
        raise MalformedMultipart(f"malformed multipart body: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SpooledFile:
    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str


class _Collector:
    """Multipart callbacks: keeps the `file` part's bytes in a small buffer the caller drains."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self.in_file = False
        self.seen_file = False
        self.filename = ""
        self.content_type = ""
        self.buffer = bytearray()
        self.size = 0
        self.error: HTTPException | None = None

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition"))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        self.in_file = name == FILE_FIELD and b"filename" in params
        if not self.in_file:
            return
        if self.seen_file:
            self.error = ClientException("send exactly one file in the 'file' field")
            return
        self.seen_file = True
        if b"\0" in params[b"filename"]:  # a name cut short at the NUL elsewhere ("clip\0.exe.mp4")
            self.error = ClientException("the filename contains a NUL byte")
            return
        self.filename = params[b"filename"].decode("utf-8", "replace")
        self.content_type = self.headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
        if not self.content_type.lower().startswith(ACCEPTED_TYPES):
            self.error = UnsupportedMediaType(f"'{self.content_type}' is not a video file type")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file or self.error:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            self.error = PayloadTooLarge(
                f"the file is larger than the {self.max_bytes // (1024 * 1024)} MiB limit"
            )
            return
        self.buffer += data[start:end]

    def on_part_end(self) -> None:
        self.in_file = False


async def spool_upload(request: Request[Any, Any, Any], scratch: Path, max_bytes: int) -> SpooledFile:
    """Stream the `file` field of a multipart request into a temp file under `scratch`."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("send the video as multipart/form-data with a 'file' field")
    collector = _Collector(max_bytes)
    with _parsing():
        parser = MultipartParser(
            boundary,
            {  # type: ignore[arg-type]
                "on_part_begin": collector.on_part_begin,
                "on_header_field": collector.on_header_field,
                "on_header_value": collector.on_header_value,
                "on_header_end": collector.on_header_end,
                "on_headers_finished": collector.on_headers_finished,
                "on_part_data": collector.on_part_data,
                "on_part_end": collector.on_part_end,
            },
        )
    fd, name = await asyncio.to_thread(_scratch_file, scratch)
    path = Path(name)
    digest = hashlib.sha256()
    raw = 0
    try:
        with os.fdopen(fd, "wb") as sink, _parsing():
            async for chunk in request.stream():
                raw += len(chunk)
                if raw > max_bytes + _FORM_OVERHEAD:
                    raise PayloadTooLarge(
                        f"the upload is larger than the {max_bytes // (1024 * 1024)} MiB limit"
                    )
                parser.write(chunk)
                if collector.error:
                    raise collector.error
                if len(collector.buffer) >= _FLUSH_AT:
                    await _drain(collector.buffer, sink, digest)
            parser.finalize()
            if collector.error:
                raise collector.error
            await _drain(collector.buffer, sink, digest)
        if not collector.seen_file:
            raise ClientException("no file found in the 'file' field")
        if collector.size == 0:
            raise ClientException("the file is empty")
        return SpooledFile(
            path, collector.filename, collector.content_type, collector.size, digest.hexdigest()
        )
    except BaseException:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - must also run when the request is cancelled
        raise


def _scratch_file(scratch: Path) -> tuple[int, str]:
    scratch.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix="upload-", suffix=".part", dir=scratch)


async def _drain(buffer: bytearray, sink: Any, digest: Any) -> None:
    data = bytes(buffer)
    buffer.clear()
    digest.update(data)
    await asyncio.to_thread(sink.write, data)


async def store_thumbnail(owner: UUID, path: Path, info: MediaInfo, store: Store) -> str | None:
    """Grab the list thumbnail from an accepted upload and store it; answer its key.

    None when that fails (logged): a video without a thumbnail is still a usable video, so this
    never rejects an upload. The grab runs in a thread, off the event loop.
    """
    try:
        data = await asyncio.wait_for(asyncio.to_thread(grab_thumbnail, path, info), THUMBNAIL_TIMEOUT_S)
        key = new_key("thumbnails", owner, "jpg")
        await store.put_stream(key, _single(data), content_type="image/jpeg")
    except Exception:
        log.warning("no thumbnail for the upload %s of user %s", path.name, owner, exc_info=True)
        return None
    return key


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data
