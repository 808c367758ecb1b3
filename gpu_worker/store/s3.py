"""An S3 bucket (AWS or any S3-compatible server: MinIO, Ceph, R2, moto) as the object store.

One aiobotocore client is opened lazily and kept in an AsyncExitStack until `aclose`: creating a client
loads the service model and a fresh connection pool (tens of milliseconds), and keeping it lets every
upload part and ranged read reuse warm HTTP connections. The client belongs to the event loop that first
used it, so a store is used from one loop (one per process: the web app's or the worker's).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .base import (
    MAX_PRESIGN_S,
    READ_CHUNK,
    ObjectNotFound,
    Store,
    StoreError,
    StoreSettings,
    check_range,
    content_disposition,
    sanitize_filename,
    validate_key,
    validate_prefix,
)

log = logging.getLogger(__name__)

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_DELETE_BATCH = 1000  # DeleteObjects' limit


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn botocore errors into StoreError/ObjectNotFound so callers never import botocore."""
    try:
        yield
    except ClientError as exc:
        if _code(exc) in _NOT_FOUND:
            raise ObjectNotFound(what) from exc
        raise StoreError(f"S3 error on {what!r}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreError(f"S3 error on {what!r}: {exc}") from exc


class _MultipartWriter:
    """Buffers up to one part; the first full part starts a multipart upload, a short object is one PUT."""

    def __init__(
        self, client: Any, bucket: str, key: str, content_type: str, part_size: int, checksums: bool
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._part_size = part_size
        # Mirrors s3transfer: with "when_supported" every part carries a CRC32 that the completion repeats.
        self._algorithm = {"ChecksumAlgorithm": "CRC32"} if checksums else {}
        self._buffer = bytearray()
        self._upload_id: str | None = None
        # The CreateMultipartUpload call, shielded: a cancel while it is in flight must not lose the
        # upload id S3 is about to hand out, or nothing could abort that upload.
        self._creating: asyncio.Future[Any] | None = None
        self._parts: list[dict[str, Any]] = []
        self.written = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.written += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            await self._upload_part(part)

    async def commit(self) -> None:
        with _translated(self._key):
            if self._upload_id is None:
                await self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=bytes(self._buffer),
                    ContentType=self._content_type,
                )
                return
            if self._buffer:
                await self._upload_part(bytes(self._buffer))
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    async def abort(self) -> None:
        """Drop the parts already uploaded; logged, not raised, so the original error stays the one seen."""
        if self._upload_id is None and self._creating is not None:
            try:  # cancelled while S3 was creating the upload: wait for its id
                self._upload_id = (await self._creating)["UploadId"]
            except (Exception, asyncio.CancelledError):
                return  # the creation failed: there is no upload to abort
        if self._upload_id is None:
            return
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except (ClientError, BotoCoreError):
            log.warning(
                "could not abort multipart upload %s of %s", self._upload_id, self._key, exc_info=True
            )

    async def _upload_part(self, body: bytes) -> None:
        with _translated(self._key):
            if self._upload_id is None:
                self._creating = asyncio.ensure_future(
                    self._client.create_multipart_upload(
                        Bucket=self._bucket, Key=self._key, ContentType=self._content_type, **self._algorithm
                    )
                )
                created = await asyncio.shield(self._creating)
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                **self._algorithm,
            )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if "ChecksumCRC32" in answer and self._algorithm:
            part["ChecksumCRC32"] = answer["ChecksumCRC32"]
        self._parts.append(part)


class S3Store(Store):
    """Objects in one bucket; uploads are streamed in parts of `part_size`, never whole in memory."""

    def __init__(self, settings: StoreSettings) -> None:
        if not settings.bucket:
            raise StoreError("the s3 store needs a bucket")
        self._bucket = settings.bucket
        self._endpoint_url = settings.endpoint_url
        self._public_endpoint_url = settings.public_endpoint_url
        self._part_size = settings.part_size
        self._expiry_s = settings.presign_expiry_s
        self._checksums = settings.checksum_mode == "when_supported"
        # Credentials left as None fall through to botocore's chain (env, profile, instance role).
        self._session = aioboto3.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            region_name=settings.region,
        )
        self._config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.path_style else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
            request_checksum_calculation=settings.checksum_mode,
            response_checksum_validation=settings.checksum_mode,
        )
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._public_client: Any = None
        self._client_lock = asyncio.Lock()
        # Aborts still running after their upload failed or was cancelled (strong refs, so they are not
        # garbage-collected); `aclose` waits for them before it closes the client they use.
        self._cleanup: set[asyncio.Task[None]] = set()

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await self._open_client(self._endpoint_url)
        return self._client

    async def _presigner(self) -> Any:
        """The client that signs download URLs. SigV4 signs the host, so a URL for browsers must be
        made on the public endpoint, not rewritten afterwards; this client signs and never connects."""
        if self._public_endpoint_url is None:
            return await self._s3()
        if self._public_client is None:
            async with self._client_lock:
                if self._public_client is None:
                    self._public_client = await self._open_client(self._public_endpoint_url)
        return self._public_client

    async def _open_client(self, endpoint_url: str | None) -> Any:
        return await self._stack.enter_async_context(
            self._session.client("s3", endpoint_url=endpoint_url, config=self._config)
        )

    @asynccontextmanager
    async def open_writer(
        self, key: str, content_type: str = "application/octet-stream"
    ) -> AsyncIterator[_MultipartWriter]:
        validate_key(key)
        writer = _MultipartWriter(
            await self._s3(), self._bucket, key, content_type, self._part_size, self._checksums
        )
        try:
            yield writer
            await writer.commit()
        except BaseException:
            # Shielded so a second cancellation cannot leave the upload (and its stored parts) behind.
            task = asyncio.ensure_future(writer.abort())
            self._cleanup.add(task)
            task.add_done_callback(self._cleanup.discard)
            await asyncio.shield(task)
            raise

    async def get_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        first, end = check_range(start, end)
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": validate_key(key)}
        if end is not None and end <= first:
            return
        if first or end is not None:
            params["Range"] = f"bytes={first}-{'' if end is None else end - 1}"
        client = await self._s3()
        with _translated(key):
            try:
                response = await client.get_object(**params)
            except ClientError as exc:
                if _code(exc) != "InvalidRange":
                    raise
                return  # starts past the end: like a slice, that is empty
        body = response["Body"]
        # `async with body` releases the connection however iteration ends; iterate the wrapper itself
        # (not what __aenter__ returns) so its length and checksum validation still run.
        with _translated(key):
            async with body:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk

    async def size(self, key: str) -> int | None:
        client = await self._s3()
        try:
            with _translated(key):
                head = await client.head_object(Bucket=self._bucket, Key=validate_key(key))
        except ObjectNotFound:
            return None
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        client = await self._s3()
        with _translated(key):
            await client.delete_object(Bucket=self._bucket, Key=validate_key(key))

    async def delete_prefix(self, prefix: str) -> None:
        client = await self._s3()
        paginator = client.get_paginator("list_objects_v2")
        with _translated(prefix):
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=validate_prefix(prefix)):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for i in range(0, len(keys), _DELETE_BATCH):
                    answer = await client.delete_objects(
                        Bucket=self._bucket, Delete={"Objects": keys[i : i + _DELETE_BATCH], "Quiet": True}
                    )
                    if errors := answer.get("Errors"):
                        raise StoreError(
                            f"S3 could not delete {len(errors)} objects under {prefix!r}: {errors[0]}"
                        )

    async def download_url(self, key: str, *, filename: str, expires_s: int | None = None) -> str:
        """A presigned GET, on the public endpoint when there is one, that makes S3 answer with our
        Content-Disposition (and Content-Type, if known)."""
        expires = self._expiry_s if expires_s is None else expires_s
        if not 0 < expires <= MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be in 1..{MAX_PRESIGN_S}")
        params = {
            "Bucket": self._bucket,
            "Key": validate_key(key),
            "ResponseContentDisposition": content_disposition(filename),
        }
        content_type, _ = mimetypes.guess_type(sanitize_filename(filename), strict=False)
        if content_type:
            params["ResponseContentType"] = content_type
        client = await self._presigner()
        with _translated(key):
            return str(await client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires))

    async def check(self) -> None:
        client = await self._s3()
        try:
            await client.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"S3 bucket {self._bucket!r} is not usable: {exc}") from exc

    async def aclose(self) -> None:
        if self._cleanup:
            await asyncio.gather(*self._cleanup, return_exceptions=True)
        await self._stack.aclose()
        self._client = None
