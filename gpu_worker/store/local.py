"""A directory on this machine as the object store: the embedded single-machine setup.

Objects are plain files under `local_root`, so the web app can serve them itself (with range requests)
from `local_path`; download links are HMAC-signed app URLs instead of presigned S3 URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from .base import (
    MAX_PRESIGN_S,
    READ_CHUNK,
    InvalidKey,
    ObjectNotFound,
    Store,
    StoreError,
    StoreSettings,
    check_range,
    discard,
    flush_and_sync,
    fsync_dir,
    sanitize_filename,
    validate_key,
    validate_prefix,
)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """Report filesystem failures (disk full, permissions, a file where a directory must go) as StoreError."""
    try:
        yield
    except OSError as exc:
        raise StoreError(f"local store error on {what!r}: {exc}") from exc


class _FileWriter:
    """Appends to the temp file off the event loop."""

    def __init__(self, file: BinaryIO, key: str) -> None:
        self._file = file
        self._key = key
        self.written = 0

    async def write(self, data: bytes) -> None:
        if data:
            with _os_errors(self._key):
                await asyncio.to_thread(self._file.write, data)
            self.written += len(data)


class LocalStore(Store):
    """Files under a root directory; every key resolves inside it or is refused."""

    def __init__(self, settings: StoreSettings) -> None:
        self._root = Path(settings.local_root).resolve()
        secret = settings.signing_secret
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._base_url = settings.public_base_url.rstrip("/")
        self._expiry_s = settings.presign_expiry_s

    @property
    def root(self) -> Path:
        return self._root

    def local_path(self, key: str) -> Path:
        """Where the object for `key` lives (whether or not it exists); never outside the root."""
        path = (self._root / validate_key(key)).resolve()
        if not path.is_relative_to(self._root):
            raise InvalidKey(f"storage key escapes the store root: {key!r}")
        return path

    @asynccontextmanager
    async def open_writer(
        self, key: str, content_type: str = "application/octet-stream"
    ) -> AsyncIterator[_FileWriter]:
        # `content_type` is not stored: the web app derives it from the download name when serving.
        # Creating, closing and removing the temp file are quick metadata calls made inline on purpose:
        # a cancellation can then never land between them and strand a temp file.
        path = self.local_path(key)
        with _os_errors(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        file = os.fdopen(fd, "wb")
        try:
            yield _FileWriter(file, key)
            with _os_errors(key):
                await asyncio.to_thread(flush_and_sync, file)
                file.close()
                os.replace(tmp, path)
                fsync_dir(path.parent)
        except BaseException:
            file.close()
            discard(tmp)
            raise

    async def get_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        first, end = check_range(start, end)
        path = self.local_path(key)
        try:
            file = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StoreError(f"local store error on {key!r}: {exc}") from exc
        with file, _os_errors(key):
            file.seek(first)
            remaining = None if end is None else max(0, end - first)
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(file.read, want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def size(self, key: str) -> int | None:
        try:
            info = self.local_path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreError(f"local store error on {key!r}: {exc}") from exc
        return info.st_size if stat.S_ISREG(info.st_mode) else None

    async def delete(self, key: str) -> None:
        # Empty parent directories are left in place: removing them would race a writer creating a file there.
        path = self.local_path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:  # IsADirectoryError included: a key never names a directory
            raise StoreError(f"local store error on {key!r}: {exc}") from exc

    async def delete_prefix(self, prefix: str) -> None:
        path = self.local_path(validate_prefix(prefix).rstrip("/"))
        # Missing or a plain file: nothing under the prefix (on S3 too, `a/b/` never matches the key `a/b`).
        with _os_errors(prefix), contextlib.suppress(FileNotFoundError, NotADirectoryError):
            await asyncio.to_thread(shutil.rmtree, path)

    async def download_url(self, key: str, *, filename: str, expires_s: int | None = None) -> str:
        """`{public_base_url}/{key}?exp=…&name=…&sig=…`, checked by `verify_download` when served."""
        validate_key(key)
        expires = self._expiry_s if expires_s is None else expires_s
        if not 0 < expires <= MAX_PRESIGN_S:  # the same bound as S3's presigned URLs
            raise ValueError(f"expires_s must be in 1..{MAX_PRESIGN_S}")
        exp = int(time.time()) + expires
        name = sanitize_filename(filename)
        query = urlencode({"exp": exp, "name": name, "sig": self._sign(key, exp, name)})
        return f"{self._base_url}/{quote(key)}?{query}"

    def verify_download(self, key: str, exp: int | str, name: str, sig: str) -> bool:
        """True when the link was made by `download_url` with this secret and has not expired."""
        try:
            validate_key(key)
            expires = int(exp)
            expected = self._sign(key, expires, name)
        except (ValueError, StoreError):
            return False
        # Compared as bytes: compare_digest refuses non-ASCII str, and `sig` is raw query-string input.
        return hmac.compare_digest(expected.encode(), sig.encode()) and time.time() <= expires

    async def check(self) -> None:
        def probe() -> None:
            self._root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._root) as file:
                file.write(b"ok")

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise StoreError(f"local store root {self._root} is not writable: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing to release: files are opened per operation."""

    def _sign(self, key: str, exp: int, name: str) -> str:
        if not self._secret:
            raise StoreError("the local store needs signing_secret to make or check download links")
        # Newlines cannot occur in a valid key or a decimal, so the three fields cannot run into each other.
        message = f"{key}\n{exp}\n{name}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
